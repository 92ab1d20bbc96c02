"""Score shipped weights on held-out scenes drawn from the prior.

    python -m inference.evaluate --weights weights/air.safetensors --scenes 1000 --seed 12345 --json out.json
    python -m inference.evaluate --weights weights/air.safetensors --objects 3      # exactly 3 objects
    python -m inference.evaluate --weights weights/air.safetensors --refine 20      # with test-time refinement

Scenes are sampled with ``--seed``, rendered exactly as the training data was (hard,
2x supersampled, box-filtered), inferred in one forward pass, matched to the truth by the
Hungarian algorithm and scored (see ``inference.metrics``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from inference.checkpoint import load_weights
from inference.metrics import add_batch, scores_for
from inference.network import AIR
from inference.infer import infer, to_scene
from inference.refine import refine
from renderer.dataset import render_images
from renderer.prior import sample_scenes
from renderer.world import World


def held_out(world: World, scenes: int, seed: int, objects: int | None, batch: int = 250):
    """Yield (images (B, 3, S, S) float, true SceneBatch) for the held-out set.

    The generator is seeded with 2**40 + seed: datasets seed chunk i with seed * 1_000_003 + i,
    so a small plain seed would redraw training scenes."""
    g = torch.Generator().manual_seed(2**40 + seed)
    for lo in range(0, scenes, batch):
        scene = sample_scenes(world, min(batch, scenes - lo), generator=g, counts=objects)
        yield render_images(scene, world).permute(0, 3, 1, 2).float() / 255.0, scene


def time_inference(model: AIR, world: World, images: torch.Tensor, batch: int, repeats: int) -> float:
    """Median ms per image of ``infer`` at the given batch size."""
    x = images[:batch]
    infer(model, x, world)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        infer(model, x, world)
        times.append((time.perf_counter() - t) * 1000 / x.shape[0])
    return sorted(times)[len(times) // 2]


def evaluate(model: AIR, world: World, scenes: int, seed: int, objects: int | None = None,
             refine_steps: int = 0) -> dict:
    """The full report as a dict (metrics, steps, timings)."""
    scores = scores_for(world)
    refined = scores_for(world) if refine_steps else None
    steps, refine_ms, first = [], [], None
    for images, truth in held_out(world, scenes, seed, objects):
        first = images if first is None else first
        result = infer(model, images, world)
        guess = to_scene(result.objects, world)
        add_batch(scores, guess, truth)
        steps.append(result.steps.float())
        if refine_steps:
            t = time.perf_counter()
            better = refine(guess, images, world, refine_steps)
            refine_ms.append((time.perf_counter() - t) * 1000 / images.shape[0])
            add_batch(refined, better, truth)
    report = scores.summary()
    report["mean_steps"] = float(torch.cat(steps).mean())
    report["ms_per_image"] = {
        "batch_1": time_inference(model, world, first, 1, 50),
        "batch_64": time_inference(model, world, first, 64, 5),
    }
    if refine_steps:
        report["refined"] = {"steps": refine_steps, "ms_per_image": sum(refine_ms) / len(refine_ms),
                             **{k: v for k, v in refined.summary().items() if k != "shape_confusion"}}
    report["setup"] = {"scenes": scenes, "seed": seed, "objects": objects, "threads": torch.get_num_threads()}
    return report


def format_report(r: dict) -> str:
    lines = [
        f"scenes {r['scenes']} (seed {r['setup']['seed']}, objects {r['setup']['objects'] or '0..N'})",
        f"count accuracy      {r['count_accuracy']:.4f}",
        f"shape accuracy      {r['shape_accuracy']:.4f}   (over {r['matched_objects']} matched objects)",
        f"colour accuracy     {r['color_accuracy']:.4f}",
        f"position error cm   median {r['position_error_cm']['median']:.2f}  p90 {r['position_error_cm']['p90']:.2f}",
        f"yaw error deg       median {r['yaw_error_deg']['median']:.2f}  p90 {r['yaw_error_deg']['p90']:.2f}",
        f"mean steps          {r['mean_steps']:.2f}",
        f"ms per image        batch 1: {r['ms_per_image']['batch_1']:.2f}   batch 64: {r['ms_per_image']['batch_64']:.3f}",
        "per count           " + "  ".join(f"{k}: {v['count_accuracy']:.3f} ({v['scenes']})" for k, v in r["per_count"].items()),
        "shape confusion (rows true, cols predicted): " + " ".join(r["shape_confusion"]["labels"]),
    ]
    for name, row in zip(r["shape_confusion"]["labels"], r["shape_confusion"]["rows_true_cols_pred"]):
        lines.append(f"  {name:9s} " + " ".join(f"{v:6d}" for v in row))
    if "refined" in r:
        f = r["refined"]
        lines.append(f"refined ({f['steps']} steps, {f['ms_per_image']:.1f} ms/image): position median "
                     f"{f['position_error_cm']['median']:.2f} p90 {f['position_error_cm']['p90']:.2f} cm, "
                     f"yaw median {f['yaw_error_deg']['median']:.2f} deg")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Evaluate AIR weights on held-out prior scenes.")
    p.add_argument("--weights", type=Path, default=Path("weights/air.safetensors"), help="weights file")
    p.add_argument("--scenes", type=int, default=1000, help="number of held-out scenes")
    p.add_argument("--seed", type=int, default=12345, help="seed of the held-out scenes")
    p.add_argument("--objects", type=int, default=None, help="draw scenes with exactly this many objects")
    p.add_argument("--refine", type=int, default=0, help="test-time refinement steps (0 = off)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, world, _ = load_weights(args.weights)
    report = evaluate(model, world, args.scenes, args.seed, args.objects, args.refine)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
