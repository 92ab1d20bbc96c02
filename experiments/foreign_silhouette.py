"""Issue 12: do silhouette statistics of the fit tell objects outside the shape set from ours?

    python -m experiments.foreign_silhouette [--weights W] [--inworld 600] [--per-shape 30]

Runs the product path (``Predictor.forward``) over in-world photos of our renderer
(``bench.trust.own_photo_set``) and over one-object photos of each of ``bench.battery``'s
foreign shapes, and reads, for every found object, in the fit's regions (``inference.fit``):

- silhouette: its inside share times its ring share (``object_fits`` without the contrast term),
  counted only for objects whose colour stands at least ``cmin`` from the table's; per image the
  smallest. Flagged below the in-world 0.3% quantile.
- sector spill: the spill ring (``lo`` to ``hi`` pixels out) split into ``k`` sectors around the
  object's centre; per image the largest share of a sector (with at least 3 pixels) that looks
  like the object. Flagged above the in-world 99.7% quantile.

Prints, per statistic and setting, the in-world limit and the share of each foreign shape beyond
it. The model card's issue 12 section quotes a run of this.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import torch
from PIL import Image

import inference.fit as fit
from bench.battery import FOREIGN_SHAPES, photos
from bench.trust import own_photo_set
from inference.api import Predictor
from training.calibrate import product_answers

CONTRASTS = (0.05, 0.10, 0.15, 0.20)
RINGS = ((1, 3, 8), (1, 4, 8), (1, 5, 8), (1, 4, 4), (2, 5, 8))  # (lo, hi, sectors)


def statistics(scene, r: fit.Regions) -> dict:
    """Both statistics of one batch, per image, for every setting."""
    n, s = scene.num_slots, r.img.shape[-1]
    masks, on_table, floor, d_table, d_own, d_surface, real = fit.object_pixels(scene, r)
    inside = fit.share(d_own < d_table, masks, 0.0)
    ring = fit.share(d_table <= d_own, fit.dilate(masks, 1) & on_table)
    contrast = (r.means[:, :n] - r.means[:, n:n + 1]).norm(dim=-1)
    out = {("silhouette", c): torch.where(real & (contrast >= c), inside * ring, torch.ones_like(inside)).amin(1)
           for c in CONTRASTS}
    ys, xs = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    m = masks.float()
    area = m.sum((-2, -1)).clamp_min(1)
    cy, cx = (m * ys).sum((-2, -1)) / area, (m * xs).sum((-2, -1)) / area
    angle = torch.atan2(ys - cy[..., None, None], xs - cx[..., None, None]) + math.pi  # (B, T, s, s) in [0, 2 pi]
    for lo, hi, k in RINGS:
        band = fit.dilate(masks, hi) & ~fit.dilate(masks, lo) & (on_table | floor)
        hit = (d_own < d_surface) & band
        sector = (angle / (2 * math.pi) * k).long().clamp(0, k - 1)
        best = torch.zeros(masks.shape[:2])
        for j in range(k):
            total = (band & (sector == j)).sum((-2, -1))
            part = (hit & (sector == j)).sum((-2, -1)) / total.clamp_min(1)
            best = torch.maximum(best, torch.where(total >= 3, part, torch.zeros_like(part)))
        out[("sector spill", (lo, hi, k))] = torch.where(real, best, torch.zeros_like(best)).amax(1)
    return out


def collect(predictor: Predictor, items: list) -> dict:
    """The statistics over ``items`` (image, camera), read where the product computes its fit."""
    batches = []
    original = fit.object_fits

    def spy(scene, r, *rest):
        batches.append(statistics(scene, r))
        return original(scene, r, *rest)

    fit.object_fits = spy
    try:
        product_answers(predictor, items)
    finally:
        fit.object_fits = original
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="weights/air.safetensors")
    ap.add_argument("--inworld", type=int, default=600, help="in-world photos of our renderer")
    ap.add_argument("--per-shape", type=int, default=30, help="photos of each foreign shape")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    predictor = Predictor.load(args.weights)
    world = predictor.world
    inworld = collect(predictor, own_photo_set(world, args.inworld, 77)[0])
    g = torch.Generator().manual_seed(5)
    foreign = {f"{spec.name} {spec.size}": collect(predictor, [
        (Image.fromarray(im), None) for im in photos(replace(world, shapes=(spec,)), args.per_shape, g, counts=(1,))])
        for spec in FOREIGN_SHAPES}
    for key, values in inworld.items():
        low = key[0] == "silhouette"
        limit = torch.quantile(values, 0.003 if low else 0.997).item()
        beyond = {name: round(float(((v[key] < limit) if low else (v[key] > limit)).float().mean()), 2)
                  for name, v in foreign.items()}
        print(f"{key[0]} {key[1]}: in-world limit {limit:.3f}; foreign beyond it: {beyond}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
