"""The model in your own process, without HTTP: load the weights once, infer on images in memory.

    from inference.api import Predictor

    predictor = Predictor.load("weights/air.safetensors")    # device="cpu" (or "cuda", "auto")
    answer = predictor.infer(frame)        # frame: (H, W, 3) uint8 RGB array, or a PIL image
    answers = predictor.infer([a, b, c])   # a list in -> a list out, in order, one forward pass
    for o in answer["objects"]:
        print(o["shape"], o["color"], o["position"], o["yaw_deg"], o["confidence"])

An answer is a plain dict with the fields of the service's ``/infer`` JSON that do not concern
HTTP: ``objects`` (each ``id``, ``shape``, ``color``, ``confidence``, ``shape_confidence``,
``color_confidence``, ``position`` {x, y, z} in metres, ``orientation`` {x, y, z, w}, ``yaw_deg``,
``bbox`` [u0, v0, u1, v1] in pixels of the image given), ``count``, ``frame_id``, ``image``
{width, height}, ``camera`` and ``model`` {version, device}. Positions are in the world frame of
ROS REP-103 (metres, z up, origin at the table centre). The service (``app``) builds its answers
from the same ``object_dicts``, so the two never disagree.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference.calibration import Calibration, joint_log_prob
from inference.checkpoint import load_weights
from inference.fit import Fit, fit_answers
from inference.foreign import cells_on_table
from inference.network import AIR
from inference.infer import Inference, infer, to_scene
from inference.preprocess import image_tensor, to_network_input, to_rgb, upright
from inference.refine import refine as refine_poses
from inference.views import ViewInput, shrunk_camera, stack_inputs, warp_plan, warp_to_view
from renderer.camera import camera_bboxes, camera_dict
from renderer.pinhole import Cameras, envelope_violations, join_cameras, spec_cameras
from renderer.scene import SceneBatch, yaw_quaternion
from renderer.world import World

ImageInput = Image.Image | np.ndarray


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_version(model: AIR, sha256: str, calibration: dict[str, Any] | None = None) -> str:
    """What ``model.version`` says: the network kind and the first 12 hex digits of the weights
    file's SHA-256, e.g. ``air-b9eca2b5d85d`` (``dair-...`` for difference AIR), and where the
    weights' ``.json`` holds a calibration (``meta.calibration``: temperatures, world limits,
    the out-of-set detector, all of which change answers), a dot and 6 hex digits of its
    SHA-256 (its JSON, keys sorted), e.g. ``air-b9eca2b5d85d.3f09c2``. Two copies of the same
    files have the same version, whatever they are called; other weights, or the same weights
    calibrated again, another."""
    version = f"{'dair' if model.config.dair else 'air'}-{sha256[:12]}"
    if not calibration:
        return version
    tag = hashlib.sha256(json.dumps(calibration, sort_keys=True).encode()).hexdigest()[:6]
    return f"{version}.{tag}"


def as_pil(image: ImageInput, index: int = 0) -> Image.Image:
    """A PIL image (any mode) or a numpy array -> a PIL image.

    Arrays: (H, W, 3) RGB or (H, W, 4) RGBA or (H, W) grey, dtype uint8 (0..255). ValueError
    naming the image's index, shape and dtype for anything else (a float image is refused rather
    than guessed at: convert it with ``(x * 255).round().astype(np.uint8)`` if it is in [0, 1]).
    """
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        ok_shape = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
        if image.dtype != np.uint8 or not ok_shape or 0 in image.shape:
            raise ValueError(f"image {index}: expected an (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey uint8 "
                             f"array, got shape {image.shape} dtype {image.dtype}")
        return Image.fromarray(np.ascontiguousarray(image))
    raise ValueError(f"image {index}: expected a PIL image or a numpy array, got {type(image).__name__}")


def object_dicts(scene: SceneBatch, confidence: torch.Tensor, shape_prob: torch.Tensor,
                 color_prob: torch.Tensor, boxes: torch.Tensor, world: World,
                 min_confidence: Sequence[float], fit: torch.Tensor) -> list[list[dict[str, Any]]]:
    """Inferred scenes -> per image, its objects in slot order, as plain dicts.

    scene: B scenes of T slots (present ones first). confidence, shape_prob, color_prob, fit:
    (B, T) (fit: ``inference.fit``'s object fit). boxes: (B, T, 4) [u0, v0, u1, v1] pixels of
    each image as given. min_confidence: per image; objects below it are dropped and ids are
    0..k-1 over what is kept.
    """
    cols = [t.tolist() for t in (scene.present, scene.shape, scene.color, scene.position, scene.yaw,
                                 confidence, shape_prob, color_prob, boxes, fit)]  # plain numbers: cheap to read one by one
    out: list[list[dict[str, Any]]] = []
    for b, (pres, shp, col, pos, yaw, conf, sp, cp, box, ft) in enumerate(zip(*cols)):
        objs: list[dict[str, Any]] = []
        for t in range(len(pres)):
            if not pres[t] or conf[t] < min_confidence[b]:
                continue
            objs.append({
                "id": len(objs), "shape": world.shape_names[shp[t]], "color": world.color_names[col[t]],
                "confidence": round(conf[t], 4), "shape_confidence": round(sp[t], 4),
                "color_confidence": round(cp[t], 4), "fit": round(ft[t], 4),
                "position": {k: round(v, 5) for k, v in zip("xyz", pos[t])},
                "orientation": {k: round(v, 6) for k, v in zip("xyzw", yaw_quaternion(yaw[t]))},
                "yaw_deg": round(math.degrees(yaw[t]), 2),
                "bbox": [round(v, 1) for v in box[t]],
            })
        out.append(objs)
    return out


def reduce_first(image: Image.Image, factor: int) -> Image.Image:
    """``image`` box-filtered by ``factor`` in its own mode where that is safe (grey and colour
    modes; 16-bit grey after its cheap cut to 8 bits), so that a large grey image is never
    expanded to RGB at full size; other modes (palette) as they are."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = to_rgb(image).convert("L")
    return image.reduce(factor) if image.mode in ("L", "LA", "RGB", "RGBA") else image


@dataclass(frozen=True)
class Prepared:
    """One image ready for the network (``Predictor.prepare``).

    pixels: (3, S, S) float in [0, 1], what the network reads (a view network: the canonical
    view). view: a view network's ``ViewInput`` (batch of 1), else None. camera: the image's
    camera (batch of 1, its own size), the default one when none was given. width, height: the
    image as given. refine_pixels: (3, S, S) the world camera's square crop, for test-time
    refinement (None when the camera is not the default one).
    """

    pixels: torch.Tensor
    view: ViewInput | None
    camera: Cameras
    width: int
    height: int
    refine_pixels: torch.Tensor | None


@dataclass(frozen=True)
class Answer:
    """What the network said about B images (T = N slots, present ones first).

    scene: the inferred (possibly refined) scenes. confidence, shape_prob, color_prob: (B, T),
    calibrated (``Predictor.calibration``). boxes: (B, T, 4) [u0, v0, u1, v1] in each image's own
    pixels. fit: how well each answer explains its image (``inference.fit``). trust: (B,)
    probability that the answer is entirely right; in_world: (B,) bool, the image passes the
    world checks. infer_ms: the forward pass and the fit; refine_ms: (B,) each image's refinement
    time. raw: the network's own outputs (``inference.infer.Inference``: logits, steps).
    """

    scene: SceneBatch
    confidence: torch.Tensor
    shape_prob: torch.Tensor
    color_prob: torch.Tensor
    boxes: torch.Tensor
    fit: Fit
    trust: torch.Tensor
    in_world: torch.Tensor
    infer_ms: float
    refine_ms: list[float]
    raw: Inference

    def quality(self, i: int, residual: bool = False) -> dict[str, Any]:
        """Image ``i``'s fit summary as a plain dict (``residual``: also the residual image, a
        nested list (3, s, s) in [0, 1])."""
        edge = float(self.fit.edge_contrast[i])
        out = {"fit": round(float(self.fit.image[i]), 4), "trust": round(float(self.trust[i]), 4),
               "in_world": bool(self.in_world[i]), "unexplained": round(float(self.fit.unexplained[i]), 4),
               "spill": round(float(self.fit.spill[i]), 4), "outline": round(float(self.fit.outline[i]), 4),
               "fill": round(float(self.fit.fill[i]), 4), "step": round(float(self.fit.step[i]), 4),
               "table_spread": round(float(self.fit.table_spread[i]), 4),
               "foreign": None if self.fit.foreign is None else round(float(self.fit.foreign[i]), 4),
               "edge_contrast": None if math.isnan(edge) else round(edge, 4)}
        if residual:
            out["residual"] = self.fit.residual[i].clamp(0, 1).round(decimals=3).tolist()
        return out


class Predictor:
    """Weights loaded onto a device; ``infer`` turns images (and their cameras) into scene dicts.

    model: the AIR network in eval mode. world: the world it was trained for (default camera,
    camera envelope, shapes, colours, N). version: see ``weights_version``. The service's engine
    runs the same ``prepare`` and ``forward``. Call from one thread at a time.
    """

    def __init__(self, model: AIR, world: World, version: str, calibration: Calibration = Calibration()) -> None:
        self.model = model
        self.world = world
        self.version = version
        self.calibration = calibration
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, weights: str | Path, device: str = "cpu") -> Predictor:
        """Load ``weights`` (.safetensors, with its .json beside it) onto ``device``: 'cpu',
        'cuda', 'cuda:N' or 'auto' (CUDA when available). ValueError for weights that are not
        an AIR network (e.g. the supervised counterpart's)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, world, meta = load_weights(weights, torch.device(device))
        return cls(model, world, weights_version(model, file_sha256(weights), meta.get("calibration")),
                   Calibration.from_meta(meta))

    @property
    def takes_cameras(self) -> bool:
        """Whether the network reads any camera of the envelope (a view network)."""
        return bool(self.model.config.view_inputs)

    def check_camera(self, camera: Cameras) -> None:
        """ValueError naming the envelope field a camera lies outside of (or saying that this
        network knows only its world's fixed camera)."""
        if not self.takes_cameras:
            raise ValueError("these weights know only their world's fixed camera; send no camera")
        problem = envelope_violations(camera, self.world.envelope)[0]
        if problem:
            raise ValueError(problem)

    def prepare(self, image: Image.Image, camera: Cameras | None = None, refine: bool = False,
                full_size: tuple[int, int] | None = None) -> Prepared:
        """A decoded image (any mode and size; turned upright as its EXIF orientation says,
        ``inference.preprocess.upright``) and its camera (None: the world's fixed one) ->
        the network's input. full_size: (height, width) of the image the camera is for, when
        ``image`` is a reduced decode of it (default: the image's own size). ``refine``: also
        keep the world camera's square crop for test-time refinement (default camera only).
        ValueError for a camera outside the envelope. Without ``refine`` the tensors come from
        inference mode (read only; ``forward``)."""
        if camera is not None:
            self.check_camera(camera)
        with torch.no_grad() if refine else torch.inference_mode():
            return self._prepare(image, camera, refine, full_size)

    def _prepare(self, image: Image.Image, camera: Cameras | None, refine: bool,
                 full_size: tuple[int, int] | None) -> Prepared:
        image = upright(image)
        h, w = full_size or (image.height, image.width)
        if refine and camera is not None:
            raise ValueError("test-time refinement works with the default camera only; send refine=0 with a camera")
        used = camera if camera is not None else spec_cameras(self.world.camera, 1, h, w)
        size = self.world.image_size
        crop = to_network_input(image, size) if (refine or not self.takes_cameras) else None
        if not self.takes_cameras:
            return Prepared(crop, None, used, w, h, crop if refine else None)
        cam = used.resized(image.height, image.width)
        factor = warp_plan(cam, self.world).factor
        if factor > 1:  # box-filter in PIL on 8 bits first: far cheaper than on the float tensor
            image = to_rgb(reduce_first(image, factor))
            cam = shrunk_camera(cam, factor, image.height, image.width)
        view = warp_to_view(image_tensor(image), cam, self.world)
        return Prepared(view.pixels[0], view, used, w, h, crop)

    def forward(self, items: Sequence[Prepared], refine: Sequence[int],
                stop: Callable[[], bool] | None = None) -> Answer:
        """One batched forward pass over prepared images, refinement for those that asked
        (``refine[i]`` steps; ``stop``: asked before each step, True ends it), and each object's
        box in its own image. Without refinement it runs in inference mode (no autograd
        bookkeeping at all: about a tenth faster at batch 1 on a CPU); the answer's tensors
        are then read-only outside it."""
        with torch.no_grad() if any(refine) else torch.inference_mode():
            return self._forward(items, refine, stop)

    def _forward(self, items: Sequence[Prepared], refine: Sequence[int], stop: Callable[[], bool] | None) -> Answer:
        t0 = time.perf_counter()
        pixels = torch.stack([it.pixels for it in items]).to(self.device)
        view = stack_inputs([it.view for it in items]).to(self.device) if self.takes_cameras else None
        cal = self.calibration
        out = infer(self.model, pixels, self.world, view, cal.temperature, cal.mirror and view is not None)
        scene = to_scene(out.objects, self.world)
        scene, refine_ms = self._refine(scene, items, refine, stop)
        fit = self.fit(scene, pixels, view, out)
        trust = cal.trust_of(joint_log_prob(out.confidence, out.shape_prob, out.color_prob, scene.present), fit.image)
        infer_ms = (time.perf_counter() - t0) * 1000 - sum(refine_ms)
        boxes = self._boxes(scene, items)
        return Answer(scene, out.confidence, out.shape_prob, out.color_prob, boxes, fit, trust,
                      cal.limits.check(fit), infer_ms, refine_ms, out)

    def _boxes(self, scene: SceneBatch, items: Sequence[Prepared]) -> torch.Tensor:
        """Each object's box in its own image, one projection per image size."""
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            by_size[(it.camera.height, it.camera.width)].append(i)
        if len(by_size) == 1:  # one size for all (a single image too): one projection, in order
            return camera_bboxes(scene, self.world, join_cameras([it.camera for it in items]).to(self.device))
        boxes = torch.zeros(*scene.present.shape, 4, device=scene.position.device)
        for idx in by_size.values():
            sel = torch.tensor(idx, device=scene.position.device)
            cams = join_cameras([items[i].camera for i in idx]).to(self.device)
            boxes[sel] = camera_bboxes(scene.select(sel), self.world, cams)
        return boxes

    def fit(self, scene: SceneBatch, pixels: torch.Tensor, view: ViewInput | None,
            out: Inference | None = None) -> Fit:
        """``inference.fit`` of answers to what the network read: a view network's views, or a
        fixed-camera network's square crops (seen whole by the world's camera); with the
        network's outputs (``out``, which hold the encoder's maps) and a detector in the
        calibration, also the out-of-set score (``inference.foreign``): the mean of the view's
        and its mirror image's logits where the mirror was read."""
        if view is not None:
            coverage, cameras = view.coverage, view.view
        else:
            b, _, s, _ = pixels.shape
            coverage, cameras = torch.ones_like(pixels[:, :1]), spec_cameras(self.world.camera, b, s, s)
        fit = fit_answers(scene, pixels, coverage, cameras, self.world)
        head = self.calibration.foreign
        if head is None or out is None or out.features is None:
            return fit
        cells = cells_on_table(coverage, fit.regions.onehot[:, :scene.num_slots + 1].sum(1) > 0)
        if out.mirror_features is None:
            logit = head.score(out.features, cells)
        else:  # the view and its mirror in one pass
            both = head.score(torch.cat([out.features, out.mirror_features]), torch.cat([cells, cells.flip(-1)]))
            logit = both.view(2, -1).mean(0)
        return replace(fit, foreign=torch.sigmoid(logit))

    def _refine(self, scene: SceneBatch, items: Sequence[Prepared], steps: Sequence[int],
                stop: Callable[[], bool] | None = None) -> tuple[SceneBatch, list[float]]:
        """Test-time refinement of the images that asked, grouped by step count; the scenes and
        each image's refinement time in ms (0 for those that did not ask)."""
        by_steps: dict[int, list[int]] = defaultdict(list)
        for i, n in enumerate(steps):
            if n:
                by_steps[n].append(i)
        refine_ms = [0.0] * len(steps)
        for n, idx in by_steps.items():
            t = time.perf_counter()
            sel = torch.tensor(idx, device=self.device)
            target = torch.stack([items[i].refine_pixels for i in idx]).to(self.device)
            with torch.enable_grad():
                better = refine_poses(scene.select(sel), target, self.world, n, stop=stop)
            scene = scene.put(sel, better)
            for i in idx:
                refine_ms[i] = (time.perf_counter() - t) * 1000
        return scene, refine_ms

    def infer(self, images: ImageInput | Sequence[ImageInput], refine: int = 0, min_confidence: float = 0.0,
              camera: Cameras | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """One image -> its answer dict; a list of images -> a list of answers, in order.

        Images: PIL images or uint8 arrays (see ``as_pil``), any size, used whole; boxes refer
        to the image as given. camera: the images' camera (``renderer.pinhole.Cameras``, one,
        for images of its size: intrinsics scale with the image), None for the world's fixed
        camera. refine: test-time refinement steps (default camera only; about 0.1 s a step on
        a CPU). min_confidence: drop objects whose presence probability is below it.
        """
        single = isinstance(images, (Image.Image, np.ndarray)) and not (
            isinstance(images, np.ndarray) and images.ndim == 4)
        pil = [as_pil(im, i) for i, im in enumerate([images] if single else list(images))]
        if refine < 0:
            raise ValueError(f"refine must be >= 0, got {refine}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if not pil:
            return []
        cams = [None if camera is None else camera.resized(im.height, im.width) for im in pil]
        items = [self.prepare(im, cam, refine > 0) for im, cam in zip(pil, cams)]
        ans = self.forward(items, [refine] * len(items))
        objects = object_dicts(ans.scene, ans.confidence, ans.shape_prob, ans.color_prob, ans.boxes, self.world,
                               [min_confidence] * len(pil), ans.fit.objects)
        answers = [{"objects": objs, "count": len(objs), "frame_id": "world",
                    "image": {"width": it.width, "height": it.height},
                    "camera": camera_dict(it.camera), "quality": ans.quality(i),
                    "model": {"version": self.version, "device": str(self.device),
                              "calibrated": self.calibration.fitted}}
                   for i, (objs, it) in enumerate(zip(objects, items))]
        return answers[0] if single else answers
