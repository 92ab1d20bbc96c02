"""Score shipped weights on held-out scenes drawn from the prior.

    python -m inference.evaluate --weights weights/air.safetensors --scenes 1000 --seed 12345 --json out.json
    python -m inference.evaluate --weights weights/air.safetensors --objects 3      # exactly 3 objects
    python -m inference.evaluate --weights weights/air.safetensors --refine 20      # with test-time refinement

Scenes come from ``held_out_set`` (the one held-out set: drawn with ``--seed``, rendered
exactly as the training data was), are inferred in one forward pass, matched to the truth by
the Hungarian algorithm and scored (``inference.metrics``). ``evaluate`` is the one evaluation
loop: training scores its validation set with it, ``bench`` every method.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from inference.calibration import Calibration
from inference.checkpoint import load_weights
from inference.metrics import add_batch, scores_for
from inference.infer import infer, to_scene
from inference.network import AIR
from inference.refine import refine
from inference.views import CameraImages, ViewInput, as_view_input, view_cameras
from renderer.camera import cameras_from_dict
from renderer.appearance import Look, LookPrior, sample_looks, shade_palette
from renderer.photo import photo_jpeg
from renderer.pinhole import Cameras, sample_cameras
from renderer.dataset import render_images
from renderer.prior import sample_scenes
from renderer.scene import SceneBatch
from renderer.world import World


# Held-out scenes are drawn from a generator seeded HELD_OUT_SEED_BASE + seed: datasets seed
# chunk i of ``--seed s`` with s * 1_000_003 + i, so a small seed used directly would redraw
# training scenes.
HELD_OUT_SEED_BASE = 1 << 40
CALIBRATION_SEED_BASE = 1 << 41  # a second disjoint set (render-and-compare tunes its penalty on it)
CHUNK = 250  # scenes drawn and rendered per call (and images per ``evaluate`` batch)
SCENE_FIELDS = ("present", "shape", "color", "position", "yaw")


def cat_scenes(parts: list[SceneBatch]) -> SceneBatch:
    """Scene batches joined along the batch dimension (the fields ``SCENE_FIELDS``)."""
    return SceneBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in SCENE_FIELDS))

Predict = Callable[[torch.Tensor], SceneBatch]


def labelled_folder(world: World, data: Path) -> tuple[list[tuple[Image.Image, Cameras]], SceneBatch]:
    """A labelled image folder (``bench.crossrender``'s layout: labels.json with each image's
    file, camera and objects; images/) -> its rendered images with their cameras, and the
    labels as scenes. Images not (yet) rendered are left out."""
    labels = json.loads((data / "labels.json").read_text())
    entries = [e for e in labels["images"] if (data / e["file"]).exists()]
    n = world.max_objects
    present = torch.zeros(len(entries), n, dtype=torch.bool)
    shape, color = torch.zeros(len(entries), n, dtype=torch.long), torch.zeros(len(entries), n, dtype=torch.long)
    position, yaw = torch.zeros(len(entries), n, 3), torch.zeros(len(entries), n)
    items = []
    for b, e in enumerate(entries):
        with Image.open(data / e["file"]) as im:
            items.append((im.convert("RGB"), cameras_from_dict(e["camera"])))
        for t, o in enumerate(e["objects"]):
            present[b, t] = True
            shape[b, t], color[b, t] = world.shape_index(o["shape"]), world.color_names.index(o["color"])
            position[b, t] = torch.tensor([o["position"][k] for k in "xyz"])
            yaw[b, t] = math.radians(o.get("yaw_deg") or 0.0)
    return items, SceneBatch(present, shape, color, position, yaw)


def held_out_set(world: World, scenes: int, seed: int, objects: int | None = None,
                 base: int = HELD_OUT_SEED_BASE) -> tuple[torch.Tensor, SceneBatch]:
    """The held-out set: ``scenes`` prior scenes (exactly ``objects`` objects each if given),
    drawn ``CHUNK`` at a time from one generator seeded ``base + seed`` and rendered as the
    training data is (hard, 2x supersampled, box-filtered). Returns images (B, 3, S, S) float
    in [0, 1] and the true SceneBatch (B, N)."""
    g = torch.Generator().manual_seed(base + seed)
    parts = [sample_scenes(world, min(CHUNK, scenes - lo), generator=g, counts=objects)
             for lo in range(0, max(scenes, 1), CHUNK)]
    scene = cat_scenes(parts)
    s = world.image_size
    images = torch.cat([render_images(p, world) for p in parts]) if scenes else torch.zeros(0, s, s, 3)
    return images.permute(0, 3, 1, 2).float() / 255.0, scene


PHOTO_SIZES = ((240, 240), (240, 320), (180, 320), (320, 240))  # (height, width), one per chunk in turn


def held_out_photos(world: World, scenes: int, seed: int, base: int = HELD_OUT_SEED_BASE,
                    sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES) -> Iterator[tuple[CameraImages, SceneBatch]]:
    """The held-out photo set: ``scenes`` prior scenes seen by cameras drawn from the envelope
    itself (no training margin), each under a look drawn from the look prior, rendered by the
    photo renderer at the camera's own resolution and through JPEG when the look says so, as
    a user's camera would send them. ``CHUNK`` scenes per chunk, chunk i at ``sizes[i % len]``.
    Yields per chunk the camera images and the true scenes, each chunk rendered when it is asked
    for (1000 images of 640 x 480 held at once would take about 4 GB as floats)."""
    g = torch.Generator().manual_seed(base + seed)
    prior = LookPrior()
    for i, lo in enumerate(range(0, scenes, CHUNK)):
        h, w = sizes[i % len(sizes)]
        cams, scene, shaded, look = draw_photo_scenes(world, min(CHUNK, scenes - lo), g, prior, h, w)
        detail = int(torch.randint(1, 4, (1,), generator=g))
        yield render_photos(shaded, world, cams, look, g, detail), scene


def draw_photo_scenes(world: World, n: int, g: torch.Generator, prior: LookPrior, height: int,
                      width: int) -> tuple[Cameras, SceneBatch, SceneBatch, Look]:
    """``n`` prior scenes seen by cameras drawn from the envelope itself (no training margin) at
    ``height`` x ``width``, under looks drawn from ``prior``: the cameras, the true scenes, the
    same scenes with each object's shade drawn from the prior, and the looks."""
    cams = sample_cameras(world.envelope, n, g, height, width, margin=False)
    scene = sample_scenes(world, n, generator=g, cameras=(cams, view_cameras(cams, world)))
    look = sample_looks(prior, n, g)
    return cams, scene, replace(scene, albedo=shade_palette(scene, world, prior, g)), look


def render_photos(shaded: SceneBatch, world: World, cams: Cameras, look: Look, g: torch.Generator,
                  detail: int) -> CameraImages:
    """Scenes through the photo renderer (and JPEG where the look says so), as camera images in [0, 1]."""
    u8 = photo_jpeg(shaded, world, cams, look, g, detail)
    return CameraImages(torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0, cams)


def evaluate_photos(predict: Predict, parts: Iterable[tuple[CameraImages, SceneBatch]], world: World,
                    ) -> tuple[dict, SceneBatch, SceneBatch, torch.Tensor]:
    """``evaluate`` over the chunks of ``held_out_photos``: the summary, the predicted and true
    scenes (all chunks), and each scene's camera envelope quantities (B, 2): elevation_deg, distance."""
    preds, truths, where = [], [], []
    for images, truth in parts:
        _, pred = evaluate(predict, images, truth, world)
        preds.append(pred)
        truths.append(truth)
        d = images.cameras.describe()
        where.append(torch.stack([d["elevation_deg"], d["distance"]], dim=-1))
    pred, truth = cat_scenes(preds), cat_scenes(truths)
    return score(pred, truth, world), pred, truth, torch.cat(where)


def banded(pred: SceneBatch, truth: SceneBatch, values: torch.Tensor, edges: list[float], world: World) -> list[dict]:
    """The metrics of the scenes whose ``values`` (B,) fall in each band [edges[i], edges[i+1])."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = torch.nonzero((values >= lo) & (values < hi))[:, 0]
        if len(sel):
            rows.append({"band": [lo, hi], **score(pred.select(sel), truth.select(sel), world)})
    return rows


def air_predict(model: AIR, world: World, refine_steps: int = 0, mirror: bool = False) -> Predict:
    """Images -> scenes by greedy inference (``inference.infer``, ``mirror`` as there), then
    ``refine_steps`` steps of test-time refinement. The caller puts the model in eval mode. A
    view_inputs network takes any of ``inference.views.as_view_input``'s inputs (plain images are
    the world camera's); refinement needs plain world-camera images of the model's size."""
    def run(images: torch.Tensor | CameraImages | ViewInput) -> SceneBatch:
        view = as_view_input(images, world) if model.config.view_inputs else None
        scene = to_scene(infer(model, images if view is None else view.pixels, world, view, mirror=mirror).objects,
                         world)
        return refine(scene, images, world, refine_steps) if refine_steps else scene
    return run


def score(pred: SceneBatch, truth: SceneBatch, world: World) -> dict:
    """The metrics summary (``inference.metrics``) of predicted against true scenes (B, N each),
    plus ``mean_steps``: the steps greedy AIR takes for these answers (count + 1, at most N)."""
    scores = scores_for(world)
    add_batch(scores, pred, truth)
    summary = scores.summary()
    summary["mean_steps"] = float((pred.count + 1).clamp(max=pred.num_slots).float().mean()) if pred.batch_size \
        else math.nan
    return summary


def evaluate(predict: Predict, images: torch.Tensor, truth: SceneBatch, world: World,
             batch: int = CHUNK) -> tuple[dict, SceneBatch]:
    """The one evaluation: ``predict`` on ``images`` (B, 3, S, S) float in [0, 1], ``batch``
    images per call, scored against ``truth`` (``score``). Returns the summary and the
    predicted scenes (B, N). Used by training, ``python -m inference.evaluate`` and ``bench``."""
    preds = [predict(images[lo : lo + batch]) for lo in range(0, images.shape[0], batch)]
    pred = cat_scenes(preds)
    return score(pred, truth, world), pred


def time_inference(model: AIR, world: World, images: torch.Tensor, batch: int, repeats: int,
                   mirror: bool = False) -> float:
    """Median ms per image of ``infer`` at the given batch size (a view network's images are
    warped to their views beforehand, outside the timing)."""
    view = as_view_input(images[:batch], world) if model.config.view_inputs else None
    x = images[:batch] if view is None else view.pixels
    infer(model, x, world, view, mirror=mirror)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        infer(model, x, world, view, mirror=mirror)
        times.append((time.perf_counter() - t) * 1000 / x.shape[0])
    return sorted(times)[len(times) // 2]


ELEVATION_BANDS = [30.0, 45.0, 60.0, 75.0, 85.01]
DISTANCE_BANDS = [0.75, 1.0, 1.25, 1.6001]


def photo_report(model: AIR, world: World, scenes: int, seed: int, mirror: bool = False) -> dict:
    """``python -m inference.evaluate --photo``: a view network on ``held_out_photos``, overall
    and by camera elevation and distance band. The model must be in eval mode."""
    if not model.config.view_inputs:
        raise ValueError("--photo scores a view network (these weights know one fixed camera)")
    parts = held_out_photos(world, scenes, seed)
    summary, pred, truth, where = evaluate_photos(air_predict(model, world, mirror=mirror), parts, world)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("shape_confusion", "per_count")} for r in rows]  # noqa: E731
    summary["by_elevation_deg"] = strip(banded(pred, truth, where[:, 0], ELEVATION_BANDS, world))
    summary["by_distance_m"] = strip(banded(pred, truth, where[:, 1], DISTANCE_BANDS, world))
    summary["setup"] = {"scenes": scenes, "seed": seed, "photo": True, "sizes": list(PHOTO_SIZES),
                        "threads": torch.get_num_threads(), "mirror": mirror}
    return summary


def report(model: AIR, world: World, scenes: int, seed: int, objects: int | None = None,
           refine_steps: int = 0, image_size: int | None = None, mirror: bool = False) -> dict:
    """The full report of ``python -m inference.evaluate`` as a dict (metrics, steps, timings;
    with ``refine_steps``, the refined answers' metrics and time). ``image_size``: render the
    held-out images at this size (default: the model's), from the world's fixed camera. The
    model must be in eval mode."""
    images, truth = held_out_set(world if image_size is None else world.with_(image_size=image_size),
                                 scenes, seed, objects)
    summary, guess = evaluate(air_predict(model, world, mirror=mirror), images, truth, world)
    summary["ms_per_image"] = {
        "batch_1": time_inference(model, world, images, 1, 50, mirror),
        "batch_64": time_inference(model, world, images, 64, 5, mirror),
    }
    if refine_steps:
        t = time.perf_counter()
        better = refine(guess, images, world, refine_steps)
        ms = (time.perf_counter() - t) * 1000 / max(1, scenes)
        refined = {k: v for k, v in score(better, truth, world).items() if k not in ("shape_confusion", "mean_steps")}
        summary["refined"] = {"steps": refine_steps, "ms_per_image": ms, **refined}
    summary["setup"] = {"scenes": scenes, "seed": seed, "objects": objects, "threads": torch.get_num_threads(),
                        "image_size": images.shape[-1], "mirror": mirror}
    return summary


def format_bands(rows: list[dict], name: str) -> list[str]:
    """Table rows of banded metrics."""
    lines = [f"{name:>14s}  scenes  count  shape  colour  pos med/p90 cm  yaw med deg"]
    for r in rows:
        lo, hi = r["band"]
        lines.append(f"{lo:6.2f}-{hi:6.2f}  {r['scenes']:6d}  {r['count_accuracy']:.3f}  {r['shape_accuracy']:.3f}  "
                     f"{r['color_accuracy']:.3f}   {r['position_error_cm']['median']:.2f} / {r['position_error_cm']['p90']:.2f}"
                     f"    {r['yaw_error_deg']['median']:.1f}")
    return lines


def format_report(r: dict) -> str:
    setup = r["setup"]
    what = "photo set: envelope cameras, prior looks" if setup.get("photo") else \
        f"objects {setup['objects'] or '0..N'}, fixed camera, {setup.get('image_size')} px"
    lines = [
        f"scenes {r['scenes']} (seed {setup['seed']}, {what}{', mirror averaged' if setup.get('mirror') else ''})",
        f"count accuracy      {r['count_accuracy']:.4f}",
        f"shape accuracy      {r['shape_accuracy']:.4f}   (over {r['matched_objects']} matched objects)",
        f"colour accuracy     {r['color_accuracy']:.4f}",
        f"position error cm   median {r['position_error_cm']['median']:.2f}  p90 {r['position_error_cm']['p90']:.2f}",
        f"yaw error deg       median {r['yaw_error_deg']['median']:.2f}  p90 {r['yaw_error_deg']['p90']:.2f}",
        f"mean steps          {r['mean_steps']:.2f}",
    ]
    if "ms_per_image" in r:
        lines.append(f"ms per image        batch 1: {r['ms_per_image']['batch_1']:.2f}   "
                     f"batch 64: {r['ms_per_image']['batch_64']:.3f}")
    lines += [
        "per count           " + "  ".join(f"{k}: {v['count_accuracy']:.3f} ({v['scenes']})" for k, v in r["per_count"].items()),
        "shape confusion (rows true, cols predicted): " + " ".join(r["shape_confusion"]["labels"]),
    ]
    for name, row in zip(r["shape_confusion"]["labels"], r["shape_confusion"]["rows_true_cols_pred"]):
        lines.append(f"  {name:9s} " + " ".join(f"{v:6d}" for v in row))
    for key, name in (("by_elevation_deg", "elevation deg"), ("by_distance_m", "distance m")):
        if key in r:
            lines += format_bands(r[key], name)
    if "refined" in r:
        f = r["refined"]
        lines.append(f"refined ({f['steps']} steps, {f['ms_per_image']:.1f} ms/image): position median "
                     f"{f['position_error_cm']['median']:.2f} p90 {f['position_error_cm']['p90']:.2f} cm, "
                     f"yaw median {f['yaw_error_deg']['median']:.2f} deg")
    return "\n".join(lines)


def main(argv: list[str] | None = None, load: Callable = load_weights) -> int:
    """The command line; ``load`` reads the weights (``experiments.anchored`` passes its own)."""
    p = argparse.ArgumentParser(description="Evaluate AIR weights on held-out prior scenes.")
    p.add_argument("--weights", type=Path, default=Path("weights/air.safetensors"), help="weights file")
    p.add_argument("--scenes", type=int, default=1000, help="number of held-out scenes")
    p.add_argument("--seed", type=int, default=12345, help="seed of the held-out scenes")
    p.add_argument("--objects", type=int, default=None, help="draw scenes with exactly this many objects")
    p.add_argument("--refine", type=int, default=0, help="test-time refinement steps (0 = off)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--image-size", type=int, default=None,
                   help="render the fixed-camera held-out images at this size (default: the model's)")
    p.add_argument("--photo", action="store_true",
                   help="score on the photo set instead: cameras across the envelope, looks from the look prior "
                        "(a view network only)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="average each view's answer with its mirror's (inference.infer; a view network only); "
                        "default: as the weights' calibration says, as the service answers")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, world, meta = load(args.weights)
    model.eval()
    mirror = Calibration.from_meta(meta).mirror if args.mirror is None else args.mirror
    if mirror and not model.config.view_inputs:
        p.error("--mirror needs a view network (weights that read cameras)")
    if args.photo:
        result = photo_report(model, world, args.scenes, args.seed, mirror)
    else:
        result = report(model, world, args.scenes, args.seed, args.objects, args.refine, args.image_size, mirror)
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
