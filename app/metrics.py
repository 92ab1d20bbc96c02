"""Prometheus metrics, in a registry of the app's own (so several apps, e.g. in tests, never clash).

HTTP: requests by route template, method and status; latency by route (seconds).
Inference: images, answers by fit band and in-world flag (drift shows here first), batch sizes, time in the queue separate from compute time per batch, queue
depth and rejections; render time; whether the model is ready.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no *_created series: they double the output and nobody graphs them

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """All of the service's collectors, registered in ``self.registry``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("airscene_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("airscene_http_request_duration_seconds", "HTTP request latency",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("airscene_infer_images", "images inferred", registry=r)
        self.batch_size = Histogram("airscene_infer_batch_size", "images per forward pass",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_seconds = Histogram("airscene_infer_queue_seconds", "time an image waits for its batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.compute_seconds = Histogram("airscene_infer_compute_seconds", "time of one batch in the model "
                                         "(forward pass, refinement, boxes)", buckets=LATENCY_BUCKETS, registry=r)
        self.render_seconds = Histogram("airscene_render_seconds", "time to render and encode one /render image",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("airscene_infer_queue_depth", "images waiting for the model", registry=r)
        self.queue_rejections = Counter("airscene_infer_queue_rejections", "requests refused with 503 because "
                                        "the queue was full", registry=r)
        self.answers = Counter("airscene_infer_answers", "answers by fit band (good >= 0.7 > fair >= 0.4 > "
                               "poor) and whether the image looked like the model's world",
                               ["fit_band", "in_world"], registry=r)
        self.ready = Gauge("airscene_ready", "1 once the weights are loaded and warmed up", registry=r)
        self.refine_worker = Gauge("airscene_refine_worker_ready", "1 while the refinement worker process has "
                                   "its weights loaded (0: not started, still loading, or it has ended)", registry=r)
        self.loop_lag = Histogram("airscene_event_loop_lag_seconds", "how late the event loop (which answers "
                                  "/healthz and admits requests) ran a timer due every 50 ms: the loop or the "
                                  "process was held up for this long", buckets=LAG_BUCKETS, registry=r)

    def count_quality(self, quality: dict) -> None:
        """Count one answer by its fit band and in-world flag (``inference.api.Answer.quality``)."""
        band = "good" if quality["fit"] >= 0.7 else "fair" if quality["fit"] >= 0.4 else "poor"
        self.answers.labels(fit_band=band, in_world=str(quality["in_world"]).lower()).inc()

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
