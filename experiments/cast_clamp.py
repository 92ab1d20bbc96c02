"""Would clamping an image's colour cast to the training looks' range undo a camera's white balance?

    python -m experiments.cast_clamp [--weights W] [--scenes 400] [--seed 778] [--bounds-seed 777] [--share 0.05]

An image's cast is the log of its mean red over mean green and of its mean blue over mean green,
read as warmth (red over blue) and tint (their mean). The bounds are the ``--share`` and
``1 - --share`` quantiles of each over ``held_out_photos(world, 600, --bounds-seed)`` (own
renderer, prior looks: what the network was trained on). The clamp scales red and blue (green
kept) so that a cast beyond the bounds lands on them; a cast inside is left alone. Each of four
camera white balances (``bench.camera_effects``'s: as rendered, warm, cool, tungsten) is applied
to ``--scenes`` photos of ``--seed``, and the product path (``bench.camera_effects.answers_under``)
answers each with and without the clamp. Prints count, shape and colour accuracy and the share
flagged not in the world. Not in the product: an experiment (the model card).
"""

from __future__ import annotations

import argparse

import torch

from bench.camera_effects import answers_under, cat_scenes, channel_gains
from inference.api import Predictor
from inference.evaluate import held_out_photos, score

CONDITIONS = {"as rendered": None, "warm (R x1.3, B x0.7)": channel_gains(1.3, 0.7),
              "cool (R x0.75, B x1.25)": channel_gains(0.75, 1.25), "tungsten (R x1.6, B x0.55)": channel_gains(1.6, 0.55)}


def casts(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) warmth and (B,) tint of images (B, 3, H, W) in [0, 1]."""
    m = pixels.clamp(1e-3, 1).mean((2, 3))
    red, blue = torch.log(m[:, 0] / m[:, 1]), torch.log(m[:, 2] / m[:, 1])
    return red - blue, (red + blue) / 2


def clamp_cast(pixels: torch.Tensor, warmth: tuple[float, float], tint: tuple[float, float]) -> torch.Tensor:
    """``pixels`` with red and blue scaled so that each image's cast lies within the bounds."""
    w, t = casts(pixels)
    w2, t2 = w.clamp(*warmth), t.clamp(*tint)
    gain = torch.stack([torch.exp((t2 + w2 / 2) - (t + w / 2)), torch.ones_like(w),
                        torch.exp((t2 - w2 / 2) - (t - w / 2))], 1)
    return (pixels * gain[:, :, None, None]).clamp(0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="weights/air.safetensors")
    ap.add_argument("--scenes", type=int, default=400)
    ap.add_argument("--seed", type=int, default=778)
    ap.add_argument("--bounds-seed", type=int, default=777)
    ap.add_argument("--share", type=float, default=0.05)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = Predictor.load(args.weights)
    world = p.world
    ws, ts = zip(*(casts(images.pixels) for images, _ in held_out_photos(world, 600, args.bounds_seed)))
    w, t = torch.cat(ws), torch.cat(ts)
    bounds = [tuple(torch.quantile(x, q).item() for q in (args.share, 1 - args.share)) for x in (w, t)]
    print(f"bounds: warmth {bounds[0][0]:.3f} to {bounds[0][1]:.3f}, tint {bounds[1][0]:.3f} to {bounds[1][1]:.3f}")
    test = list(held_out_photos(world, args.scenes, args.seed))
    truth = cat_scenes([s for _, s in test])
    for name, effect in CONDITIONS.items():
        for clamp in (False, True):
            answers = answers_under(p, test, effect, args.seed, (lambda x: clamp_cast(x, *bounds)) if clamp else None)
            s = score(cat_scenes([a.scene for a in answers]), truth, world)
            flagged = torch.cat([~a.in_world for a in answers]).float().mean().item()
            print(f"{name:28s} clamp {'on ' if clamp else 'off'}  count {s['count_accuracy']:.3f}  shape "
                  f"{s['shape_accuracy']:.3f}  colour {s['color_accuracy']:.3f}  flagged {flagged:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
