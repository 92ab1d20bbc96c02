"""The model and everything that touches torch, synchronous and single-threaded.

``Engine`` is what the server's worker thread (``app.service``) calls: tensors in, tensors out.
Decode checks live in ``app.images``, the limits in ``app.service``, the pydantic <-> tensor
mapping (and its 422s) in ``app.convert``; here the batch is assembled, inferred, optionally
refined, boxed and rendered. Call it from one thread at a time (torch modules and the renderer
cache are not made for concurrent use).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from app.images import encode_png
from inference.calibration import Calibration
from inference.api import Predictor, Prepared, file_sha256, weights_version
from inference.checkpoint import load_weights
from renderer.appearance import Look, default_look
from renderer.photo import render_photo
from renderer.pinhole import Cameras, spec_cameras
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.scene import SceneBatch

log = logging.getLogger("airscene")


@dataclass(frozen=True)
class InferItem:
    """One decoded image waiting for the model: ``prepared`` (``inference.api.Prepared``: the
    network's input, the image's camera and size), the refinement steps asked for, the
    confidence below which objects are dropped, and whether the residual image is wanted."""

    prepared: Prepared
    refine: int = 0
    min_confidence: float = 0.0
    residual: bool = False


@dataclass(frozen=True)
class InferResult:
    """What the model said about one image, T = N slots (present ones first).

    scene: the inferred (possibly refined) scene, B = 1. confidence, shape_prob, color_prob:
    (T,) q(z_pres = 1) and the chosen classes' probabilities. boxes: (T, 4) [u0, v0, u1, v1]
    pixels of the image as sent. camera: the image's camera. fit: (T,) object fit; quality: the
    image's fit summary (``inference.api.Answer.quality``); residual: (3, s, s) the
    reconstruction's residual, None unless the item asked for it. Timings in milliseconds;
    batch_size: images in the forward pass.
    """

    scene: SceneBatch
    confidence: torch.Tensor
    shape_prob: torch.Tensor
    color_prob: torch.Tensor
    boxes: torch.Tensor
    fit: torch.Tensor
    quality: dict
    residual: torch.Tensor | None
    camera: Cameras
    batch_size: int
    infer_ms: float
    refine_ms: float


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else the CPU; anything else as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"AIRSCENE_DEVICE={name} but CUDA is not available on this machine")
    return device


class Engine:
    """Loaded weights (an ``inference.api.Predictor``) plus what the service needs around them."""

    def __init__(self, predictor: Predictor, meta: dict, weights: Path, sha256: str) -> None:
        self.predictor = predictor
        self.model, self.world, self.device = predictor.model, predictor.world, predictor.device
        self.meta = meta
        self.weights = weights
        self.sha256 = sha256
        self.version = predictor.version

    @classmethod
    def load(cls, weights: Path | str, device: str = "auto", mirror: bool | None = None) -> Engine:
        """``mirror``: override the weights' mirror reading (``inference.calibration``); None keeps it.
        It applies only to weights that read cameras."""
        weights = Path(weights)
        dev = pick_device(device)
        model, world, meta = load_weights(weights, dev)
        sha256 = file_sha256(weights)
        cal = Calibration.from_meta(meta)
        if mirror is not None:
            cal = replace(cal, mirror=mirror and bool(model.config.view_inputs))
        log.info("loaded %s on %s%s", weights, dev, " (mirror reading)" if cal.mirror else "")
        return cls(Predictor(model, world, weights_version(model, sha256, meta.get("calibration")), cal), meta, weights,
                   sha256)

    @property
    def image_size(self) -> int:
        return self.world.image_size

    def preprocess(self, image: Image.Image, refine: int = 0, min_confidence: float = 0.0,
                   camera: Cameras | None = None, full_size: tuple[int, int] | None = None,
                   residual: bool = False) -> InferItem:
        """A decoded PIL image (any mode and size) and its camera (None: the default one) ->
        an item for ``infer_batch``. full_size: (height, width) of the image as sent, when it
        was decoded smaller (``app.images.decode_image``'s draft). ValueError for a camera the
        model cannot take. residual: also return the reconstruction's residual image."""
        return InferItem(self.predictor.prepare(image, camera, refine > 0, full_size), refine, min_confidence,
                         residual)

    def infer_batch(self, items: list[InferItem], stop: Callable[[], bool] | None = None) -> list[InferResult]:
        """One batched forward pass over ``items`` (then refinement for those that asked;
        ``stop``: asked before each refinement step, True ends it)."""
        ans = self.predictor.forward([it.prepared for it in items], [it.refine for it in items], stop)
        return [InferResult(ans.scene.select(slice(i, i + 1)), ans.confidence[i], ans.shape_prob[i],
                            ans.color_prob[i], ans.boxes[i], ans.fit.objects[i], ans.quality(i),
                            ans.fit.residual[i] if it.residual else None, it.prepared.camera, len(items), ans.infer_ms,
                            ans.refine_ms[i]) for i, it in enumerate(items)]

    def render_png(self, scene: SceneBatch, height: int, width: int, camera: Cameras | None = None,
                   look: Look | None = None) -> bytes:
        """One scene (B = 1) -> PNG bytes of ``height`` x ``width`` pixels: the world's camera
        and look (``hard`` shading), or, given a camera (for that size) or a look, the photo
        renderer (``renderer.photo``: smooth meshes, lights, shadows, sensor; 2x supersampled)."""
        scene = scene.to(self.device)
        with torch.no_grad():
            if camera is None and look is None:
                image = render(scene, self.world, "hard", height, width)[0]
            else:
                cams = camera if camera is not None else spec_cameras(self.world.camera, 1, height, width)
                look = look if look is not None else default_look(self.world, 1)
                g = torch.Generator().manual_seed(0)  # the sensor noise of a look is drawn the same each time
                image = render_photo(scene, self.world, cams.to(self.device), look.to(self.device), g, detail=2)[0]
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
