"""The model as an async service: loading, readiness, batching, and the two operations.

``ModelService`` owns two thread pools so that the event loop never waits on CPU work:

- ``torch``: one thread. Loading, warm-up, every forward pass (through the ``MicroBatcher``) and
  every render run here, one at a time, with torch's intra-op threads capped by the settings.
- ``decode``: two threads for untrusted image bytes -> network input (PNG/JPEG decoding and
  resizing), so decoding overlaps the forward pass of other requests.

Test-time refinement (seconds of work per request) runs in a worker process of its own at a
lower CPU priority (``app.refine_lane``), admitted by the work it asks for.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch

from app import convert
from app.batcher import MicroBatcher, QueueFull, Timed
from app.camera import CameraIn, load_camera_file, parse_camera, to_cameras
from app.config import Settings
from app.engine import Engine, InferItem, InferResult
from app.errors import ClientGone, Unavailable, Unprocessable
from app.images import decode_image
from app.metrics import Metrics
from app.refine_lane import RefineLane, WorkerDied
from inference.fit import residual_png
from app.schemas import (
    RecordedImage,
    ImageSize,
    InferParams,
    InferResponse,
    ModelInfo,
    ModelRef,
    Quality,
    RenderRequest,
    RosInferResponse,
    Timing,
)

log = logging.getLogger("airscene")

State = Literal["loading", "ready", "failed"]
# Before each refinement step the refinement worker waits while plain /infer images are in
# flight, at most this long: plain inference gets the CPU first, and refinement still moves at
# least one step per REFINE_YIELD_S under continuous plain load.
REFINE_YIELD_S = 0.15
REFINE_NICE = 10  # the refinement worker's nice increment: the kernel runs plain inference first
LAG_PERIOD_S = 0.05  # the event-loop lag watcher's timer


def _init_torch_thread(threads: int) -> None:
    torch.set_num_threads(threads)


class ModelService:
    """Loads the weights in the background at ``start()``; answers 503 until they are warm."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine: Engine | None = None
        self.default_camera: CameraIn | None = None  # AIRSCENE_CAMERA, read when the model loads
        self._info: ModelInfo | None = None
        self.state: State = "loading"
        self.error: str | None = None
        threads = settings.torch_threads()
        torch.set_num_threads(threads)
        self._torch = ThreadPoolExecutor(1, thread_name_prefix="airscene-torch",
                                         initializer=_init_torch_thread, initargs=(threads,))
        self._decode = ThreadPoolExecutor(2, thread_name_prefix="airscene-decode")
        # refinement (seconds of work per request) runs in a process of its own, admitted by the
        # steps it asks for, so that plain inference never waits behind it; on half the threads
        self.refine_lane = RefineLane(settings.weights, settings.device, settings.mirror, max(1, threads // 2),
                                      REFINE_NICE, REFINE_YIELD_S, on_ready=metrics.refine_worker.set)
        self._refine_queued = 0  # steps x images queued or running in the lane
        self._refine_step_s = 0.1  # seconds per step and image, measured as requests finish
        self.batcher: MicroBatcher[InferItem, InferResult] = MicroBatcher(
            self._infer_batch, self._torch, max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue, metrics=metrics)
        self._renders_waiting = 0
        self._load_task: asyncio.Task | None = None
        self._lag_task: asyncio.Task | None = None

    # ---- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the batcher and begin loading (returns at once; see ``wait_ready``)."""
        self.batcher.start()
        loop = asyncio.get_running_loop()
        self._load_task = loop.create_task(self._load(), name="airscene-load")
        self._lag_task = loop.create_task(self._watch_loop_lag(), name="airscene-loop-lag")

    async def _watch_loop_lag(self, period_s: float = LAG_PERIOD_S) -> None:
        """Observe, every ``period_s``, how much later than asked the loop woke up
        (``airscene_event_loop_lag_seconds``): what a /healthz probe would have waited for the loop."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(period_s)
            self.metrics.loop_lag.observe(max(0.0, time.perf_counter() - t - period_s))

    async def wait_ready(self) -> State:
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        return self.state

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self.batcher.stop()
        self._torch.shutdown(wait=False, cancel_futures=True)
        self._decode.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.refine_lane.shutdown)  # the worker ends at its next step

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            t = time.perf_counter()
            self.engine = await loop.run_in_executor(self._torch, self._load_sync)
            self._info = convert.model_info(self.engine)
        except Exception as e:  # noqa: BLE001 - reported by /readyz and the log
            self.state, self.error = "failed", public_reason(e)
            log.error("could not load the model: %s", self.error)
            return
        # Move everything alive now (model, torch and library objects: hundreds of thousands)
        # out of the collector's reach: full collections otherwise walk them all and stall
        # requests for 100+ ms (p99 at concurrency 16 on the CPU: ~130 ms -> ~35 ms).
        gc.collect()
        gc.freeze()
        if self.settings.warmup and self.settings.max_refine_steps:
            self.refine_lane.start()  # it loads its engine now, not in the first refinement's time
        self.state = "ready"
        self.metrics.ready.set(1)
        log.info("model %s ready on %s in %.1f s", self.engine.version, self.engine.device, time.perf_counter() - t)

    def _load_sync(self) -> Engine:
        if self.settings.camera is not None:
            self.default_camera = load_camera_file(self.settings.camera)
        engine = Engine.load(self.settings.weights, self.settings.device, self.settings.mirror)
        if self.settings.warmup:
            engine.warmup(self.settings.max_batch)
        return engine

    def ready_engine(self) -> Engine:
        """The engine, or a 503 saying why there is none yet."""
        if self.state == "ready" and self.engine is not None:
            return self.engine
        if self.state == "failed":
            raise Unavailable(f"the model failed to load: {self.error}", retry_after_s=60)
        raise Unavailable("the model is loading; retry shortly", retry_after_s=2)

    # ---- limits: every request limit the service checks itself, in one place ------------------
    def check_infer(self, images: list[bytes], params: InferParams, loc: tuple[str | int, ...]) -> None:
        """422 for more images than ``max_images`` or more refinement steps than ``max_refine_steps``.
        (Body size and pixel count are checked before and while reading: ``app.middleware``,
        ``app.images``.)"""
        s = self.settings
        if len(images) > s.max_images:
            raise Unprocessable(loc, f"{len(images)} images in one request; the limit is {s.max_images}")
        if params.refine > s.max_refine_steps:
            raise Unprocessable(("query", "refine"), f"refine = {params.refine} is above the limit "
                                                     f"{s.max_refine_steps} (AIRSCENE_MAX_REFINE_STEPS)")

    def check_render(self, height: int, width: int) -> None:
        """422 for a /render side above ``max_render_side``."""
        for name, value in (("width", width), ("height", height)):
            if value > self.settings.max_render_side:
                raise Unprocessable(("body", name), f"{name} {value} is above the limit "
                                                    f"{self.settings.max_render_side} (AIRSCENE_MAX_RENDER_SIDE)")

    # ---- operations -------------------------------------------------------------------------
    def cameras_for(self, count: int, params: InferParams, fields: list[str]) -> list[tuple[CameraIn | None, tuple]]:
        """Per image, the camera stated for it and where it came from (for 422s): the multipart
        ``camera`` fields (one for all images, or one each), else the ``camera`` query
        parameter, else the deployment's default (None: the world's own camera)."""
        if fields and params.camera:
            raise Unprocessable(("query", "camera"), "send the camera once: as a multipart 'camera' field or as "
                                                     "the 'camera' query parameter, not both")
        if len(fields) not in (0, 1, count):
            raise Unprocessable(("body", "camera"), f"{len(fields)} camera fields for {count} images: send one "
                                                    "camera for all images or one per image")
        if fields:
            locs = [("body", "camera") if len(fields) == 1 else ("body", "camera", i) for i in range(len(fields))]
            parsed = [(parse_camera(t, where), where) for t, where in zip(fields, locs)]
        elif params.camera:
            parsed = [(parse_camera(params.camera, ("query", "camera")), ("query", "camera"))]
        else:
            parsed = [(self.default_camera, ("settings", "camera"))]
        return parsed * count if len(parsed) == 1 else parsed

    async def infer(self, images: list[bytes], params: InferParams,
                    loc: tuple[str | int, ...] = ("body",), cameras: list[str] | None = None,
                    gone: Callable[[], Awaitable[bool]] | None = None) -> list[InferResponse | RosInferResponse]:
        """Image bytes -> one answer per image, in order.

        loc: where the images came from, for error details; the i-th image is ``(*loc, i)``
        when there are several. cameras: the camera JSON texts sent beside the images. gone:
        whether the client has hung up (refinement stops for a client that has).
        """
        t0 = time.perf_counter()
        engine = self.ready_engine()
        self.check_infer(images, params, loc)
        specs = self.cameras_for(len(images), params, cameras or [])
        if params.refine:
            return await self._infer_refined(engine, images, params, loc, specs, gone, t0)
        self.refine_lane.plain_in_flight += len(images)  # the refinement worker gives way while > 0
        try:
            self.batcher.check_room(len(images))  # refuse before spending time decoding
            self.batcher.announce(len(images))
            try:
                loop = asyncio.get_running_loop()
                decoded = await loop.run_in_executor(self._decode, self._decode_all, engine, images, params, loc, specs)
            except BaseException:
                self.batcher.withdraw(len(images))
                raise
            results = await self.batcher.submit([item for item, _ in decoded], announced=len(images))
        except QueueFull as e:
            raise Unavailable(str(e), e.retry_after_s) from None
        finally:
            self.refine_lane.plain_in_flight -= len(images)
        self.metrics.images.inc(len(images))
        for timed in results:
            self.metrics.count_quality(timed.result.quality)
        return [self._answer(engine, item, decode_ms, timed, params, t0)
                for (item, decode_ms), timed in zip(decoded, results, strict=True)]

    async def _infer_refined(self, engine: Engine, images: list[bytes], params: InferParams,
                             loc: tuple[str | int, ...], specs: list, gone: Callable[[], Awaitable[bool]] | None,
                             t0: float) -> list[InferResponse | RosInferResponse]:
        """``infer`` for a request that asks for refinement: admitted by its work (steps x
        images) against ``max_refine_queue``, run in the refinement lane, stopped when the
        client hangs up."""
        work = params.refine * len(images)
        wait_s = (self._refine_queued + work) * self._refine_step_s  # at the step time measured lately
        if self._refine_queued + work > self.settings.max_refine_queue or (
                self._refine_queued > 0 and wait_s > self.settings.max_refine_wait_s):
            self.metrics.queue_rejections.inc()
            raise Unavailable(f"the refinement queue is full ({self._refine_queued} steps queued, about "
                              f"{self._refine_queued * self._refine_step_s:.0f} s of work; this request needs {work}; "
                              f"AIRSCENE_MAX_REFINE_QUEUE is {self.settings.max_refine_queue}, AIRSCENE_MAX_REFINE_WAIT_S "
                              f"{self.settings.max_refine_wait_s:g})",
                              retry_after_s=max(1.0, self._refine_queued * self._refine_step_s))
        self._refine_queued += work
        job = None

        def release(done: asyncio.Future | None = None) -> None:  # the work leaves the count when it has stopped
            self._refine_queued -= work
            if done is not None and not done.cancelled():
                done.exception()  # read, for a job whose client had gone: no "never retrieved" warning

        try:
            loop = asyncio.get_running_loop()
            decoded = await loop.run_in_executor(self._decode, self._decode_all, engine, images, params, loc, specs)
            try:
                slot, submitted = self.refine_lane.submit([it for it, _ in decoded])
                job = asyncio.wrap_future(submitted)
                job.add_done_callback(release)
                results, ran_s = await _unless_gone(job, gone, lambda: self.refine_lane.stop(slot))
            except WorkerDied:
                raise Unavailable("the refinement worker stopped while this request waited; the next "
                                  "refinement starts a new one", retry_after_s=5) from None
            self._refine_step_s = 0.8 * self._refine_step_s + 0.2 * ran_s / work  # run + gate waits
        finally:
            if job is None:
                release()
        self.metrics.images.inc(len(images))
        for r in results:
            self.metrics.count_quality(r.quality)
        return [self._answer(engine, item, decode_ms, Timed(r, 0.0), params, t0)
                for (item, decode_ms), r in zip(decoded, results, strict=True)]

    def _answer(self, engine: Engine, item: InferItem, decode_ms: float, timed, params: InferParams,
                t0: float) -> InferResponse | RosInferResponse:
        """One image's answer schema (JSON, or its vision_msgs shape)."""
        r: InferResult = timed.result
        found = convert.objects(r, engine.world, item.min_confidence)
        answer = InferResponse(
            objects=found, count=len(found), image=ImageSize(width=item.prepared.width, height=item.prepared.height),
            camera=convert.answer_camera(r.camera),
            model=ModelRef(version=engine.version, device=str(engine.device),
                           calibrated=engine.predictor.calibration.fitted),
            quality=Quality(**r.quality, residual_png=residual_png(r.residual) if params.residual else None),
            refine_steps=params.refine, batch_size=r.batch_size,
            timing_ms=Timing(decode=round(decode_ms, 3), queue=round(timed.queue_ms, 3),
                             inference=round(r.infer_ms, 3), refine=round(r.refine_ms, 3),
                             total=round((time.perf_counter() - t0) * 1000, 3)))
        return convert.to_ros(answer, engine.world, time.time_ns()) if params.format == "ros" else answer

    def _decode_all(self, engine: Engine, images: list[bytes], params: InferParams,
                    loc: tuple[str | int, ...], specs: list[tuple[CameraIn | None, tuple]],
                    ) -> list[tuple[InferItem, float]]:
        out, left = [], self.settings.max_request_pixels
        for i, (data, (spec, where)) in enumerate(zip(images, specs)):
            t = time.perf_counter()
            image = decode_image(data, self.settings.max_pixels, (*loc, i) if len(images) > 1 else loc,
                                 draft_side=3 * engine.image_size, request_left=left)
            width, height = image.info.get("full_size", image.size)
            left -= width * height
            try:
                camera = None if spec is None else to_cameras(spec, height, width)
                item = engine.preprocess(image, params.refine, params.min_confidence, camera, (height, width),
                                         params.residual)
            except ValueError as e:
                turned = image.info.get("exif_orientation")
                why = "" if turned is None else (f" (the image was read turned upright, as its EXIF orientation {turned} "
                                                 f"says: {width}x{height}; send the upright image's camera)")
                raise Unprocessable(where, str(e) + why) from None
            out.append((item, (time.perf_counter() - t) * 1000))
        return out

    def _infer_batch(self, items: list[InferItem]) -> list[InferResult]:
        assert self.engine is not None  # the batcher only gets items once the engine is ready
        return self.engine.infer_batch(items)

    async def render(self, request: RenderRequest) -> bytes:
        """A scene -> PNG bytes, rendered in the torch thread."""
        engine = self.ready_engine()
        spec = request.camera if request.camera is not None else self.default_camera
        if spec is not None and spec.width and not (request.width or request.height or request.image):
            request = request.model_copy(update={"image": RecordedImage(width=spec.width, height=spec.height)})
        height, width = convert.render_size(request, engine.image_size, self.settings.max_render_side)
        self.check_render(height, width)
        scene = convert.scene_from_objects(request.objects, engine.world)
        try:
            camera = None if spec is None else to_cameras(spec, height, width)
        except ValueError as e:
            raise Unprocessable(("body", "camera") if request.camera is not None else ("settings", "camera"),
                                str(e)) from None
        look = convert.look_from(request.look, engine.world)
        if self._renders_waiting >= self.settings.max_queue:
            self.metrics.queue_rejections.inc()
            raise Unavailable(f"the render queue is full ({self._renders_waiting} waiting)", retry_after_s=1)
        self._renders_waiting += 1
        try:
            t = time.perf_counter()
            png = await asyncio.get_running_loop().run_in_executor(
                self._torch, engine.render_png, scene, height, width, camera, look)
            self.metrics.render_seconds.observe(time.perf_counter() - t)
            return png
        finally:
            self._renders_waiting -= 1

    def info(self) -> ModelInfo:
        self.ready_engine()
        assert self._info is not None  # set with the engine
        return self._info


def public_reason(error: Exception) -> str:
    """What /readyz may say about a failed load: the kind of failure and the file's name, never
    an absolute path or a traceback (the log has those)."""
    text = str(error)
    for part in text.split():
        if "/" in part:
            text = text.replace(part, part.rstrip(":,.'\"").rsplit("/", 1)[-1])
    return f"{type(error).__name__}: {text[:200]}"


async def _unless_gone(job: asyncio.Future, gone: Callable[[], Awaitable[bool]] | None, stop: Callable[[], None]):
    """``job``'s result; if the client hangs up first (``gone``, asked every 0.25 s), ``stop()``
    (the work ends at its next step) and raise ``ClientGone``."""
    while True:
        done, _ = await asyncio.wait({job}, timeout=0.25)
        if done:
            return job.result()
        if gone is not None and await gone():
            stop()
            raise ClientGone("the client hung up while its refinement ran; the refinement was stopped")
