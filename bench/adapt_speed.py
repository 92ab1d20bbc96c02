"""Adaptation's step time on a device, beside the CPU's (issue 13's documented iteration time).

    python -m bench.adapt_speed [--device cuda] [--steps 60] [--cpu-steps 8] [--batch 8] [--threads 4]

Writes ``--images`` photos of prior scenes from cameras drawn across the envelope (PNG, as a
user's folder holds them), loads them as ``airscene adapt`` does, and runs ``inference.adapt``
from the shipped weights with ``look_steps`` 2: the look-only steps and the first network step
(warm-up) are not timed; every later step is (wake ELBO + sleep half + backward + Adam), and the
median and mean seconds per step are printed for ``--device`` and, beside it, for the CPU
(``--cpu-steps`` 0: no CPU row). CUDA is synchronised before each clock reading.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from inference.adapt import AdaptConfig, adapt, load_views
from inference.checkpoint import load_weights
from renderer.appearance import LookPrior, sample_looks
from renderer.photo import render_photo
from renderer.pinhole import sample_cameras
from renderer.prior import sample_scenes

WARM = 3  # look-only steps plus the first network step, not timed


def _folder(weights: Path, n: int, size: int, out: Path, seed: int):
    """n photos in ``out``; -> their views (the cameras passed as a user's camera file would)."""
    _, world, _ = load_weights(weights)
    g = torch.Generator().manual_seed(seed)
    cams = sample_cameras(world.envelope, n, g, size, size)
    scenes = sample_scenes(world, n, generator=g, cameras=[cams])
    photos = render_photo(scenes, world, cams, sample_looks(LookPrior(), n, g), g)
    files = []
    for i, img in enumerate((photos * 255).round().byte().numpy()):
        files.append(out / f"{i:03d}.png")
        Image.fromarray(img).save(files[-1])
    index = {f: i for i, f in enumerate(files)}
    return load_views(files, world, lambda path, _h, _w: cams.select(slice(index[path], index[path] + 1)))


def time_steps(views, weights: Path, cfg: AdaptConfig, out: Path) -> list[float]:
    """Seconds of each timed step of a fresh run of ``cfg``."""
    stamps: list[float] = []
    cuda = cfg.device.startswith("cuda")

    def tick(_step, _model, _stats):
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    adapt(views, weights, out, cfg, resume=False, callback=tick, progress=False)
    return [b - a for a, b in zip(stamps[WARM - 1:], stamps[WARM:])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adapt_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=Path("weights/air.safetensors"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=60, help="steps on --device (the first 3 are not timed)")
    p.add_argument("--cpu-steps", type=int, default=8, help="steps on the CPU beside it (0: none)")
    p.add_argument("--batch", type=int, default=8, help="images per step (the shifted-look demonstration's 8)")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--size", type=int, default=128, help="side of the photos")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.steps <= WARM or (args.cpu_steps and args.cpu_steps <= WARM):
        p.error(f"--steps and --cpu-steps must exceed the {WARM} untimed steps")
    torch.set_num_threads(args.threads)
    base = AdaptConfig(batch=args.batch, look_steps=WARM - 1, checkpoint_every=10**9, threads=args.threads)
    runs = [(args.device, args.steps)] + ([("cpu", args.cpu_steps)] if args.cpu_steps and args.device != "cpu" else [])
    with tempfile.TemporaryDirectory() as tmp:
        views = _folder(args.weights, args.images, args.size, Path(tmp), seed=7)
        print(f"adaptation steps: batch {args.batch} (wake + sleep), {args.images} photos of {args.size} px, "
              f"likelihood {base.size} px, {args.threads} CPU threads")
        print(f"{'device':<10} {'timed steps':>11} {'median s/step':>14} {'mean s/step':>12} {'steps/s':>8}")
        for device, steps in runs:
            cfg = replace(base, steps=steps, device=device)
            times = time_steps(views, args.weights, cfg, Path(tmp) / f"{device}.safetensors")
            med = statistics.median(times)
            print(f"{device:<10} {len(times):>11} {med:>14.3f} {statistics.fmean(times):>12.3f} {1 / med:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
