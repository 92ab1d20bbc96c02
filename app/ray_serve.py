"""The service as a Ray Serve application: the FastAPI app itself is the ingress of one
deployment, so the routes, limits, micro-batching, metrics and health are the single-process
service's, per replica. Ray Serve routes requests across the replicas and scales them.

    serve run deploy/ray/serve.yaml          # replicas, autoscaling and resources from the file
    serve run app.ray_serve:app              # defaults below

Each replica builds the app on its own (``build``), reading its ``AIRSCENE_*`` settings from
the environment (the config file's ``runtime_env``), and loads the weights in its lifespan, as
``airscene serve`` does. Ray is an optional extra (``pip install -e '.[ray]'``).
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from app.main import create_app


def build() -> FastAPI:
    """The app of one replica (settings from its environment)."""
    return create_app()


@serve.deployment(
    name="airscene",
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8},
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,  # the service's own queue (AIRSCENE_MAX_QUEUE) refuses past it with 503
)
@serve.ingress(build)
class Airscene:
    """One replica: the whole HTTP service."""


app = Airscene.bind()
