"""Do Blender and our renderer agree on the world's conventions? Silhouette by silhouette.

For a handful of development-set specs with objects, Blender renders flat masks (one colour per
object, the table top white; ``blender_scene.py --mode mask``: one ray through each pixel
centre) and our rasteriser renders the instance map of the same scene from the same camera,
built from the spec's stated camera (position, optical quaternion, fx fy cx cy) through
``renderer.pinhole.Cameras``. Per object: intersection over union of the two silhouettes and
the distance between their centroids in pixels; the table top likewise.

The meshes differ on purpose (ours 16-gons and a 12 x 6 sphere, Blender's 64-gons with rounded
edges), so the IoU of a curved shape is a little below 1; a convention error (camera axes,
yaw direction, the wedge's slope, the cone's apex) moves whole silhouettes. To show that the
check would see one, each object is also compared against our rendering with its yaw turned
the wrong way (-yaw) and with the wedge's slope flipped (yaw + 180): those IoUs are reported
beside the true ones.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.crossrender.blender import render_specs
from bench.crossrender.specs import sample_spec
from renderer.camera import cameras_from_dict
from renderer.render import RasterSettings, SceneRasterizer, scene_meshes
from renderer.scene import SceneBatch
from renderer.world import World

MIN_OBJECT_IOU = 0.88  # ours are inscribed 16-gons: a sphere's silhouette is ~4% smaller
MAX_CENTROID_PX = 1.0
MIN_TABLE_IOU = 0.98


@dataclass(frozen=True)
class Agreement:
    """One silhouette: which scene and object, IoU and centroid distance (px) against
    Blender, and the IoU our renderer would reach with the yaw mirrored / turned 180."""

    scene: str
    name: str
    iou: float
    centroid_px: float
    iou_mirrored_yaw: float
    iou_turned_180: float


def spec_scene(spec: dict, world: World, yaw_sign: float = 1.0, yaw_add_deg: float = 0.0) -> SceneBatch:
    objs = spec["objects"]
    n = max(len(objs), 1)
    present = torch.zeros(1, n, dtype=torch.bool)
    present[0, :len(objs)] = True
    pad = [0] * (n - len(objs))
    return SceneBatch(
        present=present,
        shape=torch.tensor([[world.shape_index(o["shape"]) for o in objs] + pad]),
        color=torch.tensor([[world.color_index(o["color"]) for o in objs] + pad]),
        position=torch.tensor([[[o["position"][k] for k in "xyz"] for o in objs] + [[0.0] * 3] * len(pad)]),
        yaw=torch.tensor([[math.radians(yaw_sign * o["yaw_deg"] + yaw_add_deg) for o in objs] + [0.0] * len(pad)]),
    )


def our_labels(spec: dict, world: World, **turn: float) -> np.ndarray:
    """(H, W) int: slot k where object k is seen, N (object count) for the table, -1 elsewhere."""
    cam = spec["camera"]
    scene = spec_scene(spec, world, **turn)
    meshes, _, face_slot = scene_meshes(scene, world)
    raster = SceneRasterizer(world, RasterSettings(cam["height"], cam["width"]))
    p2f = raster(meshes, cameras_from_dict(cam)).pix_to_face[0, ..., 0]
    slot = face_slot[p2f.clamp_min(0)]
    slot = torch.where(slot == scene.num_slots, len(spec["objects"]), slot)
    return torch.where(p2f >= 0, slot, -1).numpy()


def blender_labels(path: Path, objects: int) -> np.ndarray:
    """Decode a mask PNG: white table -> ``objects``, one-hot colour k -> k, black -> -1."""
    rgb = np.asarray(Image.open(path).convert("RGB")) > 127
    out = np.full(rgb.shape[:2], -1)
    one = rgb.sum(-1) == 1
    out[one] = rgb[one].argmax(-1)
    out[rgb.all(-1)] = objects
    return out


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """IoU and centroid distance (px) of two boolean masks."""
    union = (a | b).sum()
    iou = float((a & b).sum() / union) if union else 1.0
    if not a.any() or not b.any():
        return iou, math.inf
    ca = np.argwhere(a).mean(0)
    cb = np.argwhere(b).mean(0)
    return iou, float(np.linalg.norm(ca - cb))


def check_specs(world: World, scenes: int, seed: int) -> list[dict]:
    """The first ``scenes`` specs of the set with ``seed`` that hold two objects or more."""
    specs, i = [], 0
    while len(specs) < scenes:
        spec = sample_spec(world, seed, i)
        if len(spec["objects"]) >= 2:
            specs.append(spec)
        i += 1
    return specs


def run_check(world: World, scenes: int, seed: int, out: Path | None = None, threads: int = 1) -> list[Agreement]:
    specs = check_specs(world, scenes, seed)
    out = out or Path(tempfile.mkdtemp(prefix="crossrender-check-"))
    render_specs(specs, out, mode="mask", threads=threads)
    rows = []
    for spec in specs:
        n = len(spec["objects"])
        theirs = blender_labels(out / spec["file"], n)
        ours = our_labels(spec, world)
        mirrored = our_labels(spec, world, yaw_sign=-1.0)
        turned = our_labels(spec, world, yaw_add_deg=180.0)
        for k in range(n + 1):
            name = "table" if k == n else spec["objects"][k]["shape"]
            iou, dist = compare(ours == k, theirs == k)
            rows.append(Agreement(spec["file"], name, iou, dist, compare(mirrored == k, theirs == k)[0],
                                  compare(turned == k, theirs == k)[0]))
    return rows


def failures(rows: list[Agreement]) -> list[str]:
    bad = []
    for r in rows:
        floor = MIN_TABLE_IOU if r.name == "table" else MIN_OBJECT_IOU
        if r.iou < floor or r.centroid_px > MAX_CENTROID_PX:
            bad.append(f"{r.scene} {r.name}: IoU {r.iou:.3f} (needs {floor}), centroid {r.centroid_px:.2f} px")
    return bad


def format_rows(rows: list[Agreement]) -> str:
    lines = ["| scene | silhouette | IoU | centroid px | IoU if yaw mirrored | IoU if turned 180 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.scene} | {r.name} | {r.iou:.3f} | {r.centroid_px:.2f} | {r.iou_mirrored_yaw:.3f} | "
              f"{r.iou_turned_180:.3f} |" for r in rows]
    return "\n".join(lines)


def check_report(rows: list[Agreement], verdict: str, args) -> str:
    from bench.methods import git_commit, stamp

    head = __doc__.split("\n\n")[1:]
    return "\n\n".join([
        "# Blender vs our renderer: silhouettes from the same stated cameras",
        f"`python -m bench.crossrender check --scenes {args.scenes} --seed {args.seed}` on {stamp()}, "
        f"commit {git_commit()}. Passes when every object's IoU >= {MIN_OBJECT_IOU}, the table's >= "
        f"{MIN_TABLE_IOU} and every centroid is within {MAX_CENTROID_PX} px.",
        *[" ".join(p.split()) for p in head],
        format_rows(rows), verdict]) + "\n"
