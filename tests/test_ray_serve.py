"""The service on Ray Serve: two replicas on a local cluster answer as the plain service does,
and requests spread across both (each replica's own metrics show its share)."""

from __future__ import annotations

import random
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from apiserver import LiveServer, settings_for

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (ROOT / "app" / "static" / "samples" / "sample-0.png").read_bytes()
REQUESTS = 25  # odd: two replicas that both served some can never report the same count, which tells them apart


def _free_port() -> int:
    """A free port outside the ranges Ray's own processes take theirs from (its workers 10002-19999,
    its other servers the system's ephemeral ports, 32768 and up): a port the system hands out
    could be taken by one of them before Serve's proxy binds it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


@pytest.fixture(scope="module")
def replicas():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"AIRSCENE_THREADS": "1", "AIRSCENE_WARMUP": "false"},
                          "working_dir": None})
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    from app.ray_serve import Airscene

    serve.run(Airscene.options(num_replicas=2, autoscaling_config=None).bind(), name="airscene", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    yield url
    serve.shutdown()
    ray.shutdown()


def _images_served(text: str) -> float:
    m = re.search(r"^airscene_infer_images_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _replica_counts(c: httpx.Client, rounds: int = 40) -> set[float]:
    """The distinct image counts that /metrics reports. Serve routes each poll to one replica of
    its choosing, and sequential polls may all land on the same one, so polls go four at a time
    (the router then spreads them by queue length), until two replicas were seen or the rounds end."""
    seen: set[float] = set()
    with ThreadPoolExecutor(4) as pool:
        for _ in range(rounds):
            seen |= set(pool.map(lambda _: _images_served(c.get("/metrics").text), range(4)))
            if len(seen) >= 2:
                break
    return seen


def test_two_replicas_answer_as_the_plain_service_and_share_the_requests(replicas):
    with httpx.Client(base_url=replicas, timeout=60) as c:
        answers = [c.post("/infer", content=SAMPLE, headers={"content-type": "image/png"}) for _ in range(REQUESTS)]
        assert all(a.status_code == 200 for a in answers)
        seen = _replica_counts(c)
    with LiveServer(settings_for(ROOT / "weights" / "air.safetensors", warmup=False)) as plain, \
            httpx.Client(base_url=plain.url, timeout=60) as c:
        own = c.post("/infer", content=SAMPLE, headers={"content-type": "image/png"}).json()
    assert answers[0].json()["objects"] == own["objects"]
    # each replica counts its own share: two counts, both above zero, that add up to all requests
    assert len(seen) == 2 and sum(seen) == REQUESTS and min(seen) > 0


def test_the_manifests_validate_against_rays_own_schema():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "deploy/ray/serve.yaml").read_text()))
    service = yaml.safe_load((ROOT / "deploy/kuberay/rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    inner = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    for cfg in (config, inner):
        app = cfg.applications[0]
        assert app.import_path == "app.ray_serve:app"
        auto = app.deployments[0].autoscaling_config
        assert auto["min_replicas"] >= 1 and auto["max_replicas"] > auto["min_replicas"]


def test_a_replica_killed_under_load_loses_no_request_silently(replicas):
    import threading

    outcomes: list[str] = []

    def client():
        with httpx.Client(base_url=replicas, timeout=60) as c:
            for _ in range(12):
                try:
                    r = c.post("/infer", content=SAMPLE, headers={"content-type": "image/png"})
                    outcomes.append(str(r.status_code))
                except httpx.HTTPError as e:  # what a client sees when its replica dies under it
                    outcomes.append(type(e).__name__)

    workers = [threading.Thread(target=client) for _ in range(3)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    victim = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                  if "SERVE_REPLICA" in a["name"] and "airscene" in a["name"])
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers)  # nothing hangs
    assert len(outcomes) == 36  # every request came back: answered, refused or failed, never lost
    assert outcomes.count("200") >= 24
    with httpx.Client(base_url=replicas, timeout=60) as c:  # the surviving replica keeps serving
        assert c.post("/infer", content=SAMPLE, headers={"content-type": "image/png"}).status_code == 200
