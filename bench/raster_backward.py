"""Render-and-backward time: PyTorch3D's own CPU backward pass against ``renderer.fastraster``.

    python -m bench.raster_backward [--repeats 5] [--threads 1]

Two workloads, each timed forward + backward over the same scenes with both backward passes:
the reduced world's ELBO likelihood (16 images, 32x32, flat soft shading, 1 px edge blur) and
the adaptation's learned look (16 views, 40x40, smooth shading, shadows, perspective-correct).
Prints the median seconds per call, the ratio, and whether the images were identical.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from inference.views import view_cameras
from renderer import fastraster
from renderer.learned import LearnedLook
from renderer.pinhole import sample_cameras
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.world import World


def _timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, image = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        image = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), image


def workloads() -> dict:
    reduced = World(image_size=32, max_objects=2)
    scene = sample_scenes(reduced, 16, seed=0)
    world = World().with_(image_size=40)
    g = torch.Generator().manual_seed(2)
    cams = sample_cameras(world.envelope, 16, g, 40, 40)
    views = sample_scenes(world, 16, generator=g, cameras=[cams], counts=3)
    look = LearnedLook(world)
    view = view_cameras(cams, world)

    def elbo() -> torch.Tensor:
        position = scene.position.clone().requires_grad_()
        image = render(replace(scene, position=position), reduced, "soft", 32, 32, blur_sigma_px=1.0)
        image.sum().backward()
        return image.detach()

    def adapt() -> torch.Tensor:
        position = views.position.clone().requires_grad_()
        image = look.render(replace(views, position=position), view)
        image.sum().backward()
        return image.detach()

    return {"ELBO likelihood, 16 x 32x32": elbo, "learned look, 16 x 40x40": adapt}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.raster_backward", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'workload':30s} {'PyTorch3D s':>12s} {'fastraster s':>12s} {'speed-up':>9s}  same image")
    for name, fn in workloads().items():
        fn()  # warm up
        fastraster.uninstall()
        try:
            slow, reference = _timed(fn, args.repeats)
        finally:
            fastraster.install()
        fast, image = _timed(fn, args.repeats)
        print(f"{name:30s} {slow:12.3f} {fast:12.3f} {slow / fast:8.1f}x  {torch.equal(image, reference)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
