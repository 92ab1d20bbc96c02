"""Learn the out-of-set detector (``inference.foreign``) by outlier exposure, the network frozen.

    python -m training.outliers render --images 10000 --seed 1001 --out data/outliers-1001.pt
    python -m training.outliers fit --data data/outliers-1001.pt --weights weights/air.safetensors
    python -m training.calibrate --labelled data/crossrender-cal   # then bound its score

``render`` draws photo renders as the service receives them (the photo renderer, looks from the
look prior, cameras from the envelope or the world's fixed camera, at small sizes to keep it
cheap), half of the world's own scenes and half of scenes whose world has one to three of its
six shapes replaced by an odd-sized version of the same kind (``foreign_spec``: each axis scaled
by up to three times either way, at least one by ``MIN_FACTOR``), reads each through the
product's view (``Predictor.prepare``) and keeps the network's encoder map, the view's coverage
and whether a foreign object is in view. The odd sizes are kept away from the test battery's
foreign shapes (``bench.battery.FOREIGN_SHAPES``: no axis within ``HOLD_AWAY`` of theirs), so
the battery stays a test of what was not shown.

``fit`` trains the head (binary cross-entropy, Adam) on four fifths of the images, keeps the
epoch with the least loss on the last fifth, and writes the head into the weights' ``.json``
(``meta.calibration.foreign``); ``training.calibrate`` then sets its bound
(``WorldLimits.max_foreign``). The ``.safetensors`` file does not change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn import functional as F

from bench.battery import FOREIGN_SHAPES
from bench.trust import to_pil
from inference.api import Predictor
from inference.checkpoint import config_path
from inference.evaluate import draw_photo_scenes, render_photos
from inference.foreign import ForeignHead, seen_cells
from renderer.appearance import LookPrior, sample_looks, shade_palette
from renderer.pinhole import spec_cameras
from renderer.prior import sample_scenes
from renderer.world import ShapeSpec, World

SIZES = ((120, 120), (120, 160), (90, 160), (160, 120))  # (height, width): small renders, one per batch in turn
MAX_FACTOR = 3.0  # an odd size scales each axis by up to this either way
MIN_FACTOR = 1.6  # and at least one axis by this much
HOLD_AWAY = 1.3  # no odd size within this factor, on every axis, of a battery shape of the same kind
SIZE_RANGE = (0.02, 0.30)  # metres, each axis
BATCH = 50
WIDTH = 16  # the head's features per cell (a 1 x 1 projection of the encoder's 66)


def foreign_spec(base: ShapeSpec, g: torch.Generator) -> ShapeSpec:
    """An odd-sized version of ``base``: each axis scaled by a factor log-uniform in
    [1 / MAX_FACTOR, MAX_FACTOR], at least one by ``MIN_FACTOR`` or more; round and square
    footprints stay so half the time; never near a battery shape."""
    while True:
        f = torch.exp((torch.rand(3, generator=g) * 2 - 1) * math.log(MAX_FACTOR))
        if base.size[0] == base.size[1] and bool(torch.rand(1, generator=g) < 0.5):
            f[1] = f[0]
        if f.log().abs().max() < math.log(MIN_FACTOR):
            continue
        size = tuple(min(max(s * float(x), SIZE_RANGE[0]), SIZE_RANGE[1]) for s, x in zip(base.size, f))
        if max(abs(math.log(a / b)) for a, b in zip(size, base.size)) < math.log(MIN_FACTOR):
            continue  # the range's bounds brought it back too close
        if not any(b.name == base.name and all(abs(math.log(a / c)) < math.log(HOLD_AWAY) for a, c in zip(size, b.size))
                   for b in FOREIGN_SHAPES):
            return ShapeSpec(base.name, size, base.yaw_symmetry_deg)


def render_batch(predictor: Predictor, g: torch.Generator, foreign: bool, fixed_camera: bool,
                 size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """``BATCH`` photos through the product's view: the encoder maps (half precision), the
    views' coverage and whether each holds a foreign object."""
    world, h, w = predictor.world, *size
    odd: list[int] = []
    if foreign:
        odd = torch.randperm(len(world.shapes), generator=g)[:int(torch.randint(1, 4, (1,), generator=g))].tolist()
        world = replace(world, shapes=tuple(foreign_spec(s, g) if i in odd else s for i, s in enumerate(world.shapes)))
    prior = LookPrior()
    if fixed_camera:
        cams = spec_cameras(world.camera, BATCH, h, w)
        scene = draw_scenes(world, g, counts=[1, 2, 3])
        look = sample_looks(prior, BATCH, g)
        shaded = replace(scene, albedo=shade_palette(scene, world, prior, g))
    else:
        cams, scene, shaded, look = draw_photo_scenes(world, BATCH, g, prior, h, w)
    images = render_photos(shaded, world, cams, look, g, int(torch.randint(1, 4, (1,), generator=g)))
    prepared = [predictor.prepare(im, None if fixed_camera else cams.select(slice(i, i + 1)))
                for i, im in enumerate(to_pil(images.pixels))]
    coverage = torch.stack([p.view.coverage[0] for p in prepared])
    with torch.inference_mode():
        features = predictor.model.encode(torch.stack([p.pixels for p in prepared]), coverage,
                                          torch.cat([p.view.features for p in prepared]))
    label = torch.zeros(BATCH, dtype=torch.bool)
    for i in odd:
        label |= (scene.present & (scene.shape == i)).any(1)
    return {"features": features.half(), "coverage": seen_cells(coverage), "foreign": label}


def draw_scenes(world: World, g: torch.Generator, counts: list[int]):
    """Prior scenes for the fixed camera; fewer objects where large odd shapes do not fit."""
    for top in range(max(counts), 0, -1):
        try:
            return sample_scenes(world, BATCH, generator=g, counts=[c for c in counts if c <= top])
        except ValueError:
            continue
    raise ValueError("no odd-sized object fits on the table")


def render(args) -> int:
    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.weights)
    if not predictor.takes_cameras:
        print("the detector reads a view network's features (weights that read cameras)", file=sys.stderr)
        return 2
    out = Path(args.out)
    parts: dict[str, list[torch.Tensor]] = {"features": [], "coverage": [], "foreign": []}
    done, g, t = 0, torch.Generator().manual_seed(args.seed), time.time()
    if out.exists() and args.resume:
        old = torch.load(out)
        if old["seed"] == args.seed:
            parts = {k: [old[k]] for k in parts}
            done = len(old["foreign"]) // BATCH
            g.set_state(old["generator"])
    for b in range(done, args.images // BATCH):
        for attempt in range(10):
            try:
                got = render_batch(predictor, g, foreign=b % 2 == 1, fixed_camera=(b // 2) % 3 == 0,
                                   size=SIZES[b % len(SIZES)])
                break
            except ValueError:  # odd shapes that find no place in view: draw them again
                continue
        else:
            raise RuntimeError("ten draws of odd shapes found no place on the table")
        for k, v in got.items():
            parts[k].append(v)
        if b % 10 == 9 or b == args.images // BATCH - 1:
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save({**{k: torch.cat(v) for k, v in parts.items()}, "seed": args.seed, "generator": g.get_state()},
                       out)
            print(f"{(b + 1) * BATCH} images, {time.time() - t:.0f} s", flush=True)
    return 0


class Head(torch.nn.Module):
    """``inference.foreign.ForeignHead`` as a trainable module."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, width: int = WIDTH) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.project = torch.nn.Conv2d(len(mean), width, 1)
        self.conv = torch.nn.Conv2d(width, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, 1, 1)

    def forward(self, features: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        x = (features - self.mean[:, None, None]) / self.scale[:, None, None]
        logits = self.out(F.relu(self.conv(F.relu(self.project(x)))))[:, 0].masked_fill(~seen, -1e4)
        return torch.logsumexp(logits.flatten(1), 1)

    def frozen(self) -> ForeignHead:
        return ForeignHead.from_tensors(self.mean, self.scale, self.project.weight, self.project.bias, self.conv.weight,
                                        self.conv.bias, self.out.weight[0, :, 0, 0], self.out.bias)


def fit(args) -> int:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    parts = [torch.load(p) for p in args.data]
    features = torch.cat([p["features"] for p in parts]).float()
    seen = torch.cat([p["coverage"] for p in parts])
    label = torch.cat([p["foreign"] for p in parts]).float()
    order = torch.randperm(len(label))
    val, train = order[:len(order) // 5], order[len(order) // 5:]
    mean, scale = features[train].mean((0, 2, 3)), features[train].std((0, 2, 3)) + 1e-3
    head = Head(mean, scale)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
    best, kept = math.inf, None
    for epoch in range(args.epochs):
        for lo in range(0, len(train), 128):
            b = train[lo:lo + 128]
            loss = F.binary_cross_entropy_with_logits(head(features[b], seen[b]), label[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        train = train[torch.randperm(len(train))]
        with torch.no_grad():
            logit = head(features[val], seen[val])
            val_loss = float(F.binary_cross_entropy_with_logits(logit, label[val]))
            acc = float(((logit > 0).float() == label[val]).float().mean())
        if val_loss < best:
            best, kept = val_loss, head.frozen()
        print(f"epoch {epoch + 1}: validation loss {val_loss:.4f}, accuracy {acc:.3f}", flush=True)
    path = config_path(args.weights)
    doc = json.loads(path.read_text())
    cal = doc.setdefault("meta", {}).setdefault("calibration", {})
    cal["foreign"] = kept.to_meta()
    cal.setdefault("fitted_on", {})["foreign"] = {"data": args.data, "images": len(label),
                                                  "validation_loss": round(best, 4)}
    path.write_text(json.dumps(doc, indent=1))
    print(f"wrote the detector into {path} (validation loss {best:.4f}); now run training.calibrate for its bound")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render the exposure set and keep the network's features")
    r.add_argument("--images", type=int, default=10000)
    r.add_argument("--seed", type=int, default=1001)
    r.add_argument("--out", required=True)
    r.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    f = sub.add_parser("fit", help="train the head and write it into the weights' .json")
    f.add_argument("--data", action="append", required=True, help="a file of render (repeat for several)")
    f.add_argument("--epochs", type=int, default=40)
    f.add_argument("--seed", type=int, default=0)
    for p in (r, f):
        p.add_argument("--weights", default="weights/air.safetensors")
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    return render(args) if args.command == "render" else fit(args)


if __name__ == "__main__":
    sys.exit(main())
