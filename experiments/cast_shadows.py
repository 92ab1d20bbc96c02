"""Issue 11: how much of the gap on other renderers do true cast shadows explain?

    python -m experiments.cast_shadows [--weights W] [--scenes 400] [--seed 777]

Draws held-out scenes, cameras from the envelope and looks from the look prior
(``inference.evaluate.draw_photo_scenes``, as the held-out photo set does), and renders
each scene twice with the photo renderer, alike in everything (the same random numbers) but
the key light's shadow: the soft contact blob the network was trained on, and the light's true
cast shadow (``renderer.photo.cast_shadow``). Scores the weights on both (``inference.evaluate``,
the mirror reading as the weights say) and prints count, shape, position and the shape
confusion for each. The model card quotes a run of this.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace

import torch

from inference.calibration import Calibration
from inference.checkpoint import load_weights
from inference.evaluate import air_predict, cat_scenes, draw_photo_scenes, evaluate, render_photos, score
from renderer.appearance import Look, LookPrior

CHUNK = 100


def arguments(argv: list[str] | None, description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--weights", default="weights/air.safetensors")
    ap.add_argument("--scenes", type=int, default=400)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mirror", choices=("weights", "on", "off"), default="weights",
                    help="read each image with its mirror image as the weights' calibration says, or always, "
                         "or never (compare uncalibrated candidates with the shipped weights at 'on')")
    return ap.parse_args(argv)


def compare_looks(args: argparse.Namespace, prior: LookPrior, variants: dict[str, Callable[[Look], Look]]) -> None:
    """Score the weights on the same drawn scenes, cameras and looks rendered once per variant
    (each a change of the drawn look, rendered with the same random numbers); print each."""
    torch.set_num_threads(args.threads)
    model, world, meta = load_weights(args.weights)
    model.eval()
    mirror = Calibration.from_meta(meta).mirror if args.mirror == "weights" else args.mirror == "on"
    predict = air_predict(model, world, mirror=mirror)
    g = torch.Generator().manual_seed(args.seed)
    found: dict[str, tuple[list, list]] = {name: ([], []) for name in variants}
    for lo in range(0, args.scenes, CHUNK):
        n = min(CHUNK, args.scenes - lo)
        cams, scene, shaded, look = draw_photo_scenes(world, n, g, prior, 120, 160)
        seed = int(torch.randint(0, 2**31, (1,), generator=g))
        for name, change in variants.items():
            images = render_photos(shaded, world, cams, change(look), torch.Generator().manual_seed(seed), 2)
            _, pred = evaluate(predict, images, scene, world)
            found[name][0].append(pred)
            found[name][1].append(scene)
    for name, (preds, truths) in found.items():
        s = score(cat_scenes(preds), cat_scenes(truths), world)
        print(f"{name:13s} count {s['count_accuracy']:.3f}  shape {s['shape_accuracy']:.3f}  "
              f"colour {s['color_accuracy']:.3f}  position median {s['position_error_cm']['median']:.2f} cm")
        print("  shape confusion (rows true, cols predicted):", " ".join(s["shape_confusion"]["labels"]))
        for label, row in zip(s["shape_confusion"]["labels"], s["shape_confusion"]["rows_true_cols_pred"]):
            print(f"  {label:9s}" + "".join(f"{v:6d}" for v in row))


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__.split("\n\n")[0])
    blob = lambda look: replace(look, cast_shadow=torch.zeros_like(look.cast_shadow))  # noqa: E731
    compare_looks(args, LookPrior(cast_shadow_probability=1.0), {"contact blob": blob, "cast shadow": lambda look: look})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
