"""The service's settings: one pydantic-settings object, read from ``AIRSCENE_*`` variables.

Only entry points (``app.main.create_app`` when given no settings, ``app.cli``) read the
environment; everything else receives a ``Settings`` instance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "air.safetensors"
RENDER_SIDE_CAP = 2048  # the renderer's own limit (renderer.render.MAX_IMAGE_SIDE)

# How uvicorn runs the service (``airscene serve``, the container's CMD, the tests' live server):
# the h11 parser, which bounds a request's head (request line and headers) at 64 KiB and answers
# 400 past it (the httptools parser reads a head of any size); at most 1000 connections and
# tasks at once (503 past them: slow clients holding connections cannot take more); idle
# keep-alive connections closed after 30 s (with 5 s, a 5 s stall of the process let every idle
# timer expire at once on resume, racing requests the clients had already sent). uvicorn has no
# timeout for reading a request's head: put a proxy with one in front where clients are not
# trusted (see the README).
SERVER_OPTIONS: dict[str, object] = {"http": "h11", "h11_max_incomplete_event_size": 64 * 1024,
                                     "limit_concurrency": 1000, "timeout_keep_alive": 30}


class Settings(BaseSettings):
    """Every knob of the service. Environment variable = ``AIRSCENE_`` + the field name in
    capitals (``AIRSCENE_MAX_BATCH=32``); a ``.env`` file in the working directory is read too.
    """

    model_config = SettingsConfigDict(env_prefix="AIRSCENE_", env_file=".env", extra="ignore",
                                      frozen=True)

    weights: Path = Field(DEFAULT_WEIGHTS, description="the .safetensors file; its .json config sits beside it")
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    threads: int = Field(0, ge=0, description="torch intra-op threads on the CPU; 0 = one less than the "
                                              "cores (at least 1, at most 8) so the event loop keeps a core")
    api_key: SecretStr | None = Field(None, description="when set, /infer and /render need "
                                                        "'Authorization: Bearer <key>'")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="allowed browser origins, comma-separated ('*' for any); empty = no CORS")
    max_batch: int = Field(16, ge=1, le=256, description="most images in one forward pass")
    max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0, description="longest a batch waits for images of "
                                                                   "requests already being decoded (a lone "
                                                                   "request never waits)")
    max_queue: int = Field(64, ge=1, description="most images waiting for the model; beyond it: 503 + Retry-After")
    max_images: int = Field(16, ge=1, description="most images in one /infer request")
    max_body_bytes: int = Field(10_000_000, ge=1, description="request body limit in bytes (413 beyond)")
    max_pixels: int = Field(40_000_000, ge=1, description="most pixels in one decoded image (413 beyond): "
                                                          "the decompression-bomb guard")
    max_request_pixels: int = Field(80_000_000, ge=1, description="most pixels in all the images of one /infer "
                                                                  "request together (413 beyond): bounds the "
                                                                  "memory one request can take")
    max_render_side: int = Field(1024, ge=1, le=RENDER_SIDE_CAP, description="largest /render width or height")
    max_refine_steps: int = Field(50, ge=0, description="largest 'refine' query value (~0.1 s per step on the "
                                                        "CPU, in a lane of its own beside plain inference)")
    max_refine_queue: int = Field(200, ge=1, description="most refinement steps (steps x images) queued or running, "
                                                         "all requests together; beyond: 503 + Retry-After")
    max_refine_wait_s: float = Field(20.0, gt=0, description="most seconds of refinement queued, at the step time "
                                                             "measured: a request that would wait longer is refused "
                                                             "(503 + Retry-After) unless the lane is idle")
    camera: Path | None = Field(None, description="a camera JSON file (the /infer 'camera' schema): the default camera "
                                                  "of /infer and /render for this deployment")
    mirror: bool | None = Field(None, description="read each image and its mirror image and average the answers "
                                                  "(inference.infer.mirror_average: shapes right more often, about "
                                                  "1.2x the time at batch 1 and 1.5x batched); unset: as the "
                                                  "weights' calibration says (on for the shipped weights, whose "
                                                  "probabilities are fitted to it); only for weights that read "
                                                  "cameras")
    warmup: bool = Field(True, description="run a forward pass and a render before /readyz says ready")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="level of the service's own log ('airscene' logger)")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        ok = value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
        if not ok:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
        return value

    def torch_threads(self) -> int:
        """Intra-op threads to give torch on the CPU."""
        if self.threads:
            return self.threads
        return max(1, min(8, (os.cpu_count() or 2) - 1))
