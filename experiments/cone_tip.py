"""Issue 13 part 1: does the adaptation's likelihood tell a true cone from a sphere in its place?

    python -m experiments.cone_tip --look runs/adapt-shifted/mine.safetensors.ckpt.pt \
        [--data data/shifted-test] [--scenes 40] [--size 40] [--roundings 0.01 0.5 0.99]

For the first ``--scenes`` labelled scenes of a ``bench.crossrender`` set that hold a cone, the
learned look of an adaptation run (its checkpoint's theta; the world's start look with
``--look start``) draws the true scene and, for each cone, the same scene with that cone a
sphere resting at the same place. Prints, at each of the cone tip's roundings
(``LearnedLook.apex_rounding``; every other value as learned): how many cones the likelihood
prefers as the truth, the median margin (log-likelihood, nats), and the true scenes' summed
log-likelihood (higher: the images look more like the drawing). Development images only.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from bench.crossrender.check import spec_scene
from inference.adapt import load_views
from inference.checkpoint import read_config
from inference.elbo import scene_log_likelihood
from inference.views import ViewInput
from renderer.camera import cameras_from_dict
from renderer.learned import LearnedLook
from renderer.world import World


def spec_views(specs: list[dict], data: Path, world: World) -> ViewInput:
    """The specs' images as the network's views, each with its own camera."""
    cameras = {s["file"]: s["camera"] for s in specs}
    return load_views([data / "images" / s["file"] for s in specs], world,
                      lambda path, _h, _w: cameras_from_dict(cameras[path.name]))


def cone_margins(look: LearnedLook, specs: list[dict], v: ViewInput, world: World, size: int) -> tuple[list[float], float]:
    """(per cone: log p(x | truth) - log p(x | that cone a sphere), summed log p(x | truth));
    ``v``: the specs' views (``spec_views``)."""
    sphere = world.shape_index("sphere")
    margins, total = [], 0.0
    with torch.no_grad():
        for i, spec in enumerate(specs):
            truth = spec_scene(spec, world)
            one = v[torch.tensor([i])]
            ll = float(scene_log_likelihood(truth, one, look, size)[0])
            total += ll
            for j, o in enumerate(spec["objects"]):
                if o["shape"] != "cone":
                    continue
                shape, position = truth.shape.clone(), truth.position.clone()
                shape[0, j], position[0, j, 2] = sphere, world.shapes[sphere].resting_z
                swapped = replace(truth, shape=shape, position=position)
                margins.append(ll - float(scene_log_likelihood(swapped, one, look, size)[0]))
    return margins, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cone_tip", description=__doc__.split("\n\n")[0])
    p.add_argument("--look", required=True, help="an adaptation checkpoint (<out>.ckpt.pt), or 'start'")
    p.add_argument("--weights", type=Path, default=Path("weights/air.safetensors"), help="for the world")
    p.add_argument("--data", type=Path, default=Path("data/shifted-test"))
    p.add_argument("--scenes", type=int, default=40)
    p.add_argument("--size", type=int, default=40, help="side of the likelihood's image (divides 80)")
    p.add_argument("--roundings", type=float, nargs="+", default=[0.01, 0.5, 0.99])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    world = World.from_dict(read_config(args.weights)["world"])
    look = LearnedLook(world)
    if args.look != "start":
        state = torch.load(args.look, weights_only=False, map_location="cpu")["look"]
        look.load_state_dict(state, strict=False)  # a look learned before the tip's rounding: the start's
    specs = [s for s in json.loads((args.data / "specs.json").read_text())
             if any(o["shape"] == "cone" for o in s["objects"])][: args.scenes]
    print(f"{len(specs)} scenes with cones from {args.data}; look {args.look}; learned rounding "
          f"{float(look.apex_rounding()):.3f}")
    print("rounding  cones  truth preferred  median margin (nats)  true scenes' log-lik")
    v = spec_views(specs, args.data, world)
    for r in args.roundings:
        with torch.no_grad():
            look.apex_logit.fill_(math.log(r / (1 - r)))
        margins, total = cone_margins(look, specs, v, world, args.size)
        m = torch.tensor(margins)
        print(f"{r:8.2f}  {len(margins):5d}  {int((m > 0).sum()):15d}  {float(m.median()):20.1f}  {total:20.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
