"""The model and everything that touches torch, synchronous and single-threaded.

``Engine`` is what the server's worker thread (``app.service``) and the local CLI both call:
decode checks live in ``app.images``, the pydantic <-> tensor mapping in ``app.convert``; here the
batch is assembled, inferred, optionally refined, boxed and rendered. Call it from one thread at
a time (torch modules and the renderer cache are not made for concurrent use).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image

from app import convert
from app.errors import NotImplementedOption, Unprocessable
from app.images import encode_png
from app.schemas import (
    CameraInfo,
    ColorInfo,
    DetectedObject,
    ModelInfo,
    PlacementArea,
    RenderRequest,
    ShapeInfo,
    Vector3,
)
from inference.checkpoint import load_weights
from inference.network import AIR
from inference.infer import infer, to_scene
from inference.preprocess import to_network_input
from renderer.camera import object_bboxes
from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World

log = logging.getLogger("airscene")


@dataclass(frozen=True)
class InferItem:
    """One decoded image waiting for the model.

    pixels: (3, S, S) float32 in [0, 1], the network's input. width, height: the image as sent.
    refine: refinement steps asked for. min_confidence: drop objects below it.
    """

    pixels: torch.Tensor
    width: int
    height: int
    refine: int = 0
    min_confidence: float = 0.0


@dataclass(frozen=True)
class InferResult:
    """What the model said about one image; timings in milliseconds."""

    objects: list[DetectedObject]
    camera: CameraInfo
    batch_size: int
    inference_ms: float
    refine_ms: float


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else the CPU; 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available")
    return device


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_refiner():
    """``inference.refine.refine`` if this build has it, else None (imported lazily: optional)."""
    try:
        from inference.refine import refine
    except ImportError:
        return None
    return refine


class Engine:
    """Weights loaded onto a device; ``infer_batch`` and ``render_png`` do the work."""

    def __init__(self, model: AIR, world: World, meta: dict, device: torch.device, weights: Path,
                 sha256: str) -> None:
        self.model = model
        self.world = world
        self.meta = meta
        self.device = device
        self.weights = weights
        self.sha256 = sha256
        self.version = str(meta.get("version") or f"{weights.stem}-{sha256[:12]}")
        self._refine = _load_refiner()
        self.camera = lru_cache(maxsize=64)(lambda h, w: convert.camera(world, h, w))
        self._info: ModelInfo | None = None

    @classmethod
    def load(cls, weights: Path | str, device: str = "auto") -> Engine:
        """Load ``weights`` (.safetensors + .json) onto ``device`` ('auto', 'cpu', 'cuda[:N]')."""
        weights = Path(weights)
        dev = pick_device(device)
        model, world, meta = load_weights(weights, dev)
        log.info("loaded %s on %s", weights, dev)
        return cls(model, world, meta, dev, weights, file_sha256(weights))

    @property
    def image_size(self) -> int:
        return self.world.image_size

    @property
    def can_refine(self) -> bool:
        return self._refine is not None

    def preprocess(self, image: Image.Image, refine: int = 0, min_confidence: float = 0.0) -> InferItem:
        """A decoded PIL image -> the network's input (any mode and size; see inference.preprocess)."""
        return InferItem(to_network_input(image, self.image_size), image.width, image.height, refine, min_confidence)

    def infer_batch(self, items: list[InferItem]) -> list[InferResult]:
        """One batched forward pass over ``items`` (then refinement for those that asked)."""
        if any(it.refine for it in items) and self._refine is None:
            raise NotImplementedOption("refine is not available in this build (no inference.refine)")
        t0 = time.perf_counter()
        images = torch.stack([it.pixels for it in items]).to(self.device)
        out = infer(self.model, images, self.world)
        scene = to_scene(out.objects, self.world)
        t1 = time.perf_counter()
        by_steps: dict[int, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            if it.refine:
                by_steps[it.refine].append(i)
        refine_ms = [0.0] * len(items)
        for steps, idx in by_steps.items():
            t = time.perf_counter()
            sel = torch.tensor(idx, device=self.device)
            refined = self._refine(scene.select(sel), images[sel], self.world, steps)
            scene = _put(scene, sel, refined)
            for i in idx:
                refine_ms[i] = (time.perf_counter() - t) * 1000
        boxes = self._boxes(scene, items)
        objs = convert.detections(scene, out.confidence, out.shape_prob, out.color_prob, boxes, self.world,
                                  [it.min_confidence for it in items])
        infer_ms = (t1 - t0) * 1000
        return [InferResult(o, self.camera(it.height, it.width), len(items), infer_ms, r)
                for o, it, r in zip(objs, items, refine_ms)]

    def _boxes(self, scene: SceneBatch, items: list[InferItem]) -> torch.Tensor:
        """(B, T, 4) boxes in each image's own pixels (one projection per distinct size)."""
        boxes = torch.zeros(scene.batch_size, scene.num_slots, 4, device=self.device)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            by_size[(it.height, it.width)].append(i)
        for (h, w), idx in by_size.items():
            sel = torch.tensor(idx, device=self.device)
            boxes[sel] = object_bboxes(scene.select(sel), self.world, h, w)
        return boxes

    def render_png(self, request: RenderRequest, max_side: int) -> bytes:
        """A scene request -> PNG bytes. Raises ``Unprocessable`` for a bad scene or size."""
        size = self.image_size
        width = request.width or request.height or size
        height = request.height or request.width or size
        for name, value in (("width", width), ("height", height)):
            if value > max_side:
                raise Unprocessable(("body", name), f"{name} {value} is above the limit {max_side} "
                                                    "(AIRSCENE_MAX_RENDER_SIDE)")
        scene = convert.scene_from_objects(request.objects, self.world).to(self.device)
        with torch.no_grad():
            image = render(scene, self.world, "hard", height, width)[0]
        rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return encode_png(rgb)

    def warmup(self, max_batch: int) -> None:
        """Run the paths a request takes once, so the first request is not slow."""
        img = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
        item = self.preprocess(img)
        self.infer_batch([item])
        if max_batch > 1:
            self.infer_batch([item] * min(max_batch, 8))
        self.render_png(RenderRequest.model_validate({"objects": [
            {"shape": self.world.shape_names[0], "color": self.world.color_names[0], "position": {"x": 0, "y": 0}}]}),
            max_side=self.image_size)
        self.info()

    def info(self) -> ModelInfo:
        """What /v1/model says (computed once)."""
        if self._info is None:
            self._info = self._make_info()
        return self._info

    def _make_info(self) -> ModelInfo:
        w = self.world
        e = w.placement_half_extent
        meta = dict(self.meta)
        metrics = meta.pop("metrics", {}) or {}
        return ModelInfo(
            version=self.version, weights=self.weights.name, sha256=self.sha256, device=str(self.device),
            max_objects=w.max_objects, image_size=w.image_size,
            shapes=[ShapeInfo(name=s.name, size=Vector3(**dict(zip("xyz", s.size))), resting_z=s.resting_z,
                              yaw_symmetry_deg=s.yaw_symmetry_deg) for s in w.shapes],
            colors=[ColorInfo(name=c.name, rgb=list(c.rgb)) for c in w.colors],
            table_size_m=w.table_size,
            placement_area=PlacementArea(x_min=-e, x_max=e, y_min=-e, y_max=e),
            camera=self.camera(w.image_size, w.image_size),
            metrics=metrics, card=meta,
        )


def _put(scene: SceneBatch, index: torch.Tensor, part: SceneBatch) -> SceneBatch:
    """``scene`` with the scenes at ``index`` replaced by ``part`` (same slots)."""

    def put(full: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        full = full.clone()
        full[index] = sub.to(full.dtype)
        return full

    return SceneBatch(put(scene.present, part.present), put(scene.shape, part.shape), put(scene.color, part.color),
                      put(scene.position, part.position), put(scene.yaw, part.yaw))
