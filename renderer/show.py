"""Draw a grid of prior samples for people to look at.

    python -m renderer.show --seed 0 --out docs/prior.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

from renderer.prior import sample_scenes
from renderer.render import render
from renderer.world import World


def prior_grid(world: World, seed: int, rows: int, cols: int, size: int) -> Image.Image:
    """rows x cols prior samples rendered ``hard`` at ``size`` pixels, 2-pixel gutters."""
    scene = sample_scenes(world, rows * cols, seed=seed)
    with torch.no_grad():
        img = render(scene, world, "hard", size, size)
    gap = 2
    canvas = torch.ones(rows * (size + gap) + gap, cols * (size + gap) + gap, 3)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        y, x = gap + r * (size + gap), gap + c * (size + gap)
        canvas[y : y + size, x : x + size] = img[k]
    return Image.fromarray((canvas * 255).round().to(torch.uint8).numpy())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Render a grid of scenes drawn from the prior.")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene prior")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--rows", type=int, default=4, help="grid rows")
    p.add_argument("--cols", type=int, default=6, help="grid columns")
    p.add_argument("--size", type=int, default=128, help="side of each image in pixels")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prior_grid(World(), args.seed, args.rows, args.cols, args.size).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
