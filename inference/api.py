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
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference.checkpoint import load_weights
from inference.network import AIR
from inference.infer import infer, to_scene
from inference.preprocess import to_network_input
from inference.refine import refine as refine_poses
from renderer.camera import camera_info, object_bboxes
from renderer.scene import SceneBatch, yaw_to_quat
from renderer.world import World

ImageInput = Image.Image | np.ndarray


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_version(model: AIR, sha256: str) -> str:
    """What ``model.version`` says: the network kind and the first 12 hex digits of the weights
    file's SHA-256, e.g. ``air-b9eca2b5d85d`` (``dair-...`` for difference AIR). Two files with
    the same bytes have the same version, whatever they are called; any other file another."""
    return f"{'dair' if model.config.dair else 'air'}-{sha256[:12]}"


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
                 min_confidence: Sequence[float]) -> list[list[dict[str, Any]]]:
    """Inferred scenes -> per image, its objects in slot order, as plain dicts.

    scene: B scenes of T slots (present ones first). confidence, shape_prob, color_prob: (B, T).
    boxes: (B, T, 4) [u0, v0, u1, v1] pixels of each image as given. min_confidence: per image;
    objects below it are dropped and ids are 0..k-1 over what is kept.
    """
    quat = yaw_to_quat(scene.yaw)
    cols = [t.detach().cpu().tolist() for t in (scene.present, scene.shape, scene.color, scene.position,
                                                 scene.yaw, quat, confidence, shape_prob, color_prob, boxes)]
    out: list[list[dict[str, Any]]] = []
    for b, (pres, shp, col, pos, yaw, q, conf, sp, cp, box) in enumerate(zip(*cols)):
        objs: list[dict[str, Any]] = []
        for t in range(len(pres)):
            if not pres[t] or conf[t] < min_confidence[b]:
                continue
            objs.append({
                "id": len(objs), "shape": world.shape_names[shp[t]], "color": world.color_names[col[t]],
                "confidence": round(conf[t], 4), "shape_confidence": round(sp[t], 4),
                "color_confidence": round(cp[t], 4),
                "position": {k: round(v, 5) for k, v in zip("xyz", pos[t])},
                "orientation": {k: round(v, 6) for k, v in zip("xyzw", q[t])},
                "yaw_deg": round(math.degrees(yaw[t]), 2),
                "bbox": [round(v, 1) for v in box[t]],
            })
        out.append(objs)
    return out


class Predictor:
    """Weights loaded onto a device; ``infer`` turns images into scene dicts.

    model: the AIR network in eval mode. world: the world it was trained for (camera, shapes,
    colours, N). version: see ``weights_version``. Call from one thread at a time.
    """

    def __init__(self, model: AIR, world: World, version: str) -> None:
        self.model = model
        self.world = world
        self.version = version
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, weights: str | Path, device: str = "cpu") -> Predictor:
        """Load ``weights`` (.safetensors, with its .json beside it) onto ``device``: 'cpu',
        'cuda', 'cuda:N' or 'auto' (CUDA when available). ValueError for weights that are not
        an AIR network (e.g. the supervised counterpart's)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, world, _ = load_weights(weights, torch.device(device))
        return cls(model, world, weights_version(model, file_sha256(weights)))

    def infer(self, images: ImageInput | Sequence[ImageInput], refine: int = 0,
              min_confidence: float = 0.0) -> dict[str, Any] | list[dict[str, Any]]:
        """One image -> its answer dict; a list of images -> a list of answers, in order.

        Images: PIL images or uint8 arrays (see ``as_pil``), any size: non-square ones are
        centre-cropped for the network, and boxes refer to the image as given. refine: test-time
        refinement steps (render-and-compare on the pose; about 0.1 s a step on a CPU).
        min_confidence: drop objects whose presence probability is below it.
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
        x = torch.stack([to_network_input(im, self.world.image_size) for im in pil]).to(self.device)
        out = infer(self.model, x, self.world)
        scene = to_scene(out.objects, self.world)
        if refine:
            scene = refine_poses(scene, x, self.world, refine)
        with torch.no_grad():
            boxes = torch.cat([object_bboxes(scene.select(slice(i, i + 1)), self.world, im.height, im.width)
                               for i, im in enumerate(pil)])
        objects = object_dicts(scene, out.confidence, out.shape_prob, out.color_prob, boxes, self.world,
                               [min_confidence] * len(pil))
        answers = [{"objects": objs, "count": len(objs), "frame_id": "world",
                    "image": {"width": im.width, "height": im.height},
                    "camera": camera_info(self.world, im.height, im.width),
                    "model": {"version": self.version, "device": str(self.device)}}
                   for objs, im in zip(objects, pil)]
        return answers[0] if single else answers
