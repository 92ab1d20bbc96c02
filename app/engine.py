"""The model and everything that touches torch, synchronous and single-threaded.

``Engine`` is what the server's worker thread (``app.service``) calls: tensors in, tensors out.
Decode checks live in ``app.images``, the limits in ``app.service``, the pydantic <-> tensor
mapping (and its 422s) in ``app.convert``; here the batch is assembled, inferred, optionally
refined, boxed and rendered. Call it from one thread at a time (torch modules and the renderer
cache are not made for concurrent use).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from app.images import encode_png
from inference.api import file_sha256, weights_version
from inference.checkpoint import load_weights
from inference.infer import infer, to_scene
from inference.network import AIR
from inference.preprocess import to_network_input
from inference.refine import refine
from renderer.camera import object_bboxes
from renderer.prior import sample_scenes
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
    """What the model said about one image, T = N slots (present ones first).

    scene: the inferred (possibly refined) scene, B = 1. confidence, shape_prob, color_prob:
    (T,) q(z_pres = 1) and the chosen classes' probabilities. boxes: (T, 4) [u0, v0, u1, v1]
    pixels of the image as sent. Timings in milliseconds; batch_size: images in the forward pass.
    """

    scene: SceneBatch
    confidence: torch.Tensor
    shape_prob: torch.Tensor
    color_prob: torch.Tensor
    boxes: torch.Tensor
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
        self.version = weights_version(model, sha256)

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

    def preprocess(self, image: Image.Image, refine: int = 0, min_confidence: float = 0.0) -> InferItem:
        """A decoded PIL image -> the network's input (any mode and size; see inference.preprocess)."""
        return InferItem(to_network_input(image, self.image_size), image.width, image.height, refine, min_confidence)

    def infer_batch(self, items: list[InferItem]) -> list[InferResult]:
        """One batched forward pass over ``items`` (then refinement for those that asked)."""
        t0 = time.perf_counter()
        images = torch.stack([it.pixels for it in items]).to(self.device)
        out = infer(self.model, images, self.world)
        scene = to_scene(out.objects, self.world)
        infer_ms = (time.perf_counter() - t0) * 1000
        scene, refine_ms = self._refine(scene, images, [it.refine for it in items])
        boxes = self._boxes(scene, items)
        return [InferResult(scene.select(slice(i, i + 1)), out.confidence[i], out.shape_prob[i], out.color_prob[i],
                            boxes[i], len(items), infer_ms, refine_ms[i]) for i in range(len(items))]

    def _refine(self, scene: SceneBatch, images: torch.Tensor, steps: list[int]) -> tuple[SceneBatch, list[float]]:
        """Test-time refinement of the images that asked for it, grouped by their step count;
        the scenes and each image's refinement time in ms (0 for those that did not ask)."""
        by_steps: dict[int, list[int]] = defaultdict(list)
        for i, n in enumerate(steps):
            if n:
                by_steps[n].append(i)
        refine_ms = [0.0] * len(steps)
        for n, idx in by_steps.items():
            t = time.perf_counter()
            sel = torch.tensor(idx, device=self.device)
            scene = _put(scene, sel, refine(scene.select(sel), images[sel], self.world, n))
            for i in idx:
                refine_ms[i] = (time.perf_counter() - t) * 1000
        return scene, refine_ms

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

    def render_png(self, scene: SceneBatch, height: int, width: int) -> bytes:
        """One scene (B = 1) -> PNG bytes of ``height`` x ``width`` pixels (``hard`` shading)."""
        with torch.no_grad():
            image = render(scene.to(self.device), self.world, "hard", height, width)[0]
        rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return encode_png(rgb)

    def warmup(self, max_batch: int) -> None:
        """Run the paths a request takes once, so the first request is not slow."""
        img = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
        item = self.preprocess(img)
        self.infer_batch([item])
        if max_batch > 1:
            self.infer_batch([item] * min(max_batch, 8))
        self.render_png(sample_scenes(self.world, 1, seed=0, counts=1), self.image_size, self.image_size)


def _put(scene: SceneBatch, index: torch.Tensor, part: SceneBatch) -> SceneBatch:
    """``scene`` with the scenes at ``index`` replaced by ``part`` (same slots)."""

    def put(full: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        full = full.clone()
        full[index] = sub.to(full.dtype)
        return full

    return SceneBatch(put(scene.present, part.present), put(scene.shape, part.shape), put(scene.color, part.color),
                      put(scene.position, part.position), put(scene.yaw, part.yaw))
