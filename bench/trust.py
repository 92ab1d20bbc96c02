"""How far the answers can be trusted: calibration, wrong-answer detection, the in-world flag.

    python -m bench.trust --weights weights/air.safetensors --scenes 1000 --blender data/crossrender \\
        --out bench/results/trust.md

Every image goes through the product path (``inference.api.Predictor.prepare/forward``, the
calibration in the weights' .json), on sets the calibration never saw:
- own renderer, photo: ``inference.evaluate.held_out_photos`` (cameras of the envelope, random
  looks, JPEG), seed 12345 as the model card's photo numbers;
- own renderer, fixed camera: ``inference.evaluate.held_out_set`` (the world's camera and look);
- Blender sets (``bench.crossrender``) that ``--blender`` names: the development set, and
  issue 13's shifted look, which no calibration uses;
- the out-of-world battery (``bench.battery``), sent without a camera.

For each in-world set: the expected calibration error of presence decisions, shapes and
colours; of trust against "the whole answer is right"; the area under the ROC curve with which
the image fit, and trust, rank right answers above wrong ones (wrong: a count or a shape); and
the share flagged not in the world. For the battery: the share flagged, per kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.battery import battery
from bench.methods import git_commit, stamp
from inference.api import Predictor
from inference.evaluate import cat_scenes, held_out_photos, held_out_set, labelled_folder
from inference.metrics import expected_calibration_error
from renderer.pinhole import Cameras
from renderer.scene import SceneBatch
from training.calibrate import answer_batches, answer_right, calibration_errors, collect, product_answers

Item = tuple[Image.Image, Cameras | None]


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8, as a camera's 8-bit frames."""
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) float in [0, 1] -> PIL images (8 bits)."""
    return [Image.fromarray(a) for a in to_uint8(pixels)]


def own_photo_set(world, scenes: int, seed: int) -> tuple[list[Item], SceneBatch]:
    items, truths = [], []
    for images, truth in held_out_photos(world, scenes, seed):
        items += [(im, images.cameras.select(slice(i, i + 1))) for i, im in enumerate(to_pil(images.pixels))]
        truths.append(truth)
    return items, cat_scenes(truths)


def fixed_camera_set(world, scenes: int, seed: int) -> tuple[list[Item], SceneBatch]:
    images, truth = held_out_set(world, scenes, seed)
    return [(im, None) for im in to_pil(images)], truth


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative (ties count half); nan when either class is empty."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def in_world_row(predictor: Predictor, items: list[Item], truth: SceneBatch) -> dict:
    """One in-world set's calibration, detection and flag figures."""
    t = time.perf_counter()
    done = product_answers(predictor, items)
    seconds = time.perf_counter() - t
    batches = answer_batches(done, truth)
    o = collect(batches)
    ece = calibration_errors(o, predictor.calibration.temperature)
    judged = [answer_right(a.scene, b[2]) for a, b in zip(done, batches)]
    count_shape = torch.cat([shapes for shapes, _ in judged]).numpy()
    right = torch.cat([colours for _, colours in judged]).numpy()
    trust = torch.cat([a.trust for a in done]).numpy()
    fit = torch.cat([a.fit.image for a in done]).numpy()
    flagged = ~torch.cat([a.in_world for a in done]).numpy()
    return {"images": len(items), "ece": ece, "answers_right": float(right.mean()),
            "trust_ece": expected_calibration_error(trust, right),
            "auroc_fit": auroc(fit, count_shape), "auroc_trust": auroc(trust, count_shape),
            "wrong_count_or_shape": int((~count_shape).sum()), "flagged": float(flagged.mean()),
            "ms_per_image": 1000 * seconds / max(len(items), 1)}


def battery_row(predictor: Predictor, seed: int, per_kind: int) -> dict:
    """Share of each battery kind flagged not in the world."""
    images = battery(predictor.world, seed, per_kind)
    done = product_answers(predictor, [(im, None) for _, im in images])
    flagged = ~torch.cat([a.in_world for a in done]).numpy()
    kinds = [k for k, _ in images]
    per = {k: float(np.mean([f for f, kk in zip(flagged, kinds) if kk == k])) for k in dict.fromkeys(kinds)}
    return {"images": len(images), "flagged": float(flagged.mean()), "per_kind": per}


def fitted_sets(cal: dict) -> list[str]:
    """The validation sets a stored calibration names (``training.calibrate``'s ``fitted_on``)."""
    fitted = cal.get("fitted_on", {})
    return ([fitted["data"]] if "data" in fitted else []) + list(fitted.get("labelled", []))


def format_report(rows: dict[str, dict], bat: dict, args, cal: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = [f"# Trust: calibration, wrong answers, the in-world flag ({stamp()}, commit {git_commit()})", "",
             f"Command: `python -m bench.trust {' '.join(sys.argv[1:]) if args.argv is None else ' '.join(args.argv)}`",
             f"Weights: `{args.weights}`; calibration fitted on "
             f"{', '.join(f'`{d}`' for d in fitted_sets(cal)) or '-'} (temperatures {cal.get('temperature')}, "
             f"trust {cal.get('trust')}, world limits {cal.get('limits')}).", "",
             "| set | images | ECE presence | ECE shape | ECE colour | answers right | ECE trust "
             "| AUROC fit | AUROC trust | wrong (count/shape) | flagged | ms/image |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        e = r["ece"]
        lines.append(f"| {name} | {r['images']} | {pct(e['presence'])} | {pct(e['shape'])} | {pct(e['color'])} "
                     f"| {pct(r['answers_right'])} | {pct(r['trust_ece'])} | {r['auroc_fit']:.3f} "
                     f"| {r['auroc_trust']:.3f} | {r['wrong_count_or_shape']} | {pct(r['flagged'])} "
                     f"| {r['ms_per_image']:.1f} |")
    lines += ["", f"Out-of-world battery (`bench.battery`, seed {args.seed}, {args.per_kind} per kind): "
              f"{bat['images']} images, flagged {pct(bat['flagged'])}.", "", "| kind | flagged |", "|---|---|"]
    lines += [f"| {k} | {pct(v)} |" for k, v in bat["per_kind"].items()]
    lines += ["", "Targets (issue 12): ECE <= 3% for presence, shape, colour; AUROC >= 0.9; battery flagged "
              ">= 95%; in-world flagged <= 2%. ms/image: the whole product path at batch 50 on this machine."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="weights/air.safetensors")
    ap.add_argument("--scenes", type=int, default=1000, help="scenes in each own-renderer set")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--blender", action="append", default=[],
                    help="a Blender set's folder (bench.crossrender); repeat for several")
    ap.add_argument("--per-kind", type=int, default=40, help="battery images of each kind")
    ap.add_argument("--out", default="", help="write the report here (markdown)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.weights)
    world = predictor.world
    sets = {"own renderer, photo (envelope cameras, random looks)": own_photo_set(world, args.scenes, args.seed),
            "own renderer, fixed camera and look": fixed_camera_set(world, args.scenes, args.seed)}
    for folder in args.blender:
        look = json.loads((Path(folder) / "labels.json").read_text()).get("look", "dev")
        sets[f"Blender, {look} look (`{folder}`)"] = labelled_folder(world, Path(folder))
    rows = {name: in_world_row(predictor, items, truth) for name, (items, truth) in sets.items()}
    bat = battery_row(predictor, args.seed, args.per_kind)
    cal = json.loads(Path(args.weights).with_suffix(".json").read_text())["meta"].get("calibration", {})
    report = format_report(rows, bat, args, cal)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
