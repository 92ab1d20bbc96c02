"""How do the answers hold up under what real cameras do that the training looks do not?

    python -m bench.camera_effects --scenes 200 --seed 12345 --out bench/results/camera-effects.md

The look prior (``renderer.appearance.LookPrior``) already draws exposure, gamma, white balance,
sensor noise up to 0.03, blur up to 0.7 pixels of the network's view and JPEG at quality 40-95
(and the shipped weights' last training stages drew, in three images of ten, a quarter of the
light to twice it with noise up to 0.08: ``LookPrior.harsh_probability``; and in four of ten a
camera rendering colour off its calibration: white balance off by up to e^0.4 warm or cool,
tone curves gamma 0.5-2, saturation x0.35-1.3, glare up to 20%: ``LookPrior.colour_probability``).
This bench takes the held-out photo set (``inference.evaluate.held_out_photos``: envelope
cameras, prior looks, each camera's own resolution) and adds, one at a time, effects beyond
that, each as the physics of a camera makes it:

- vignetting: the natural cos^4 fall-off of a lens with no correction, from each image's own
  focal length and principal point (the corners of a 4:3 camera with a 65-degree vertical field
  of view get about a fifth of the centre's light; real lenses correct some of it);
- motion blur: the camera panning during the exposure, a horizontal smear of 2% of the width;
- chromatic aberration: red magnified and blue shrunk by 0.4% about the principal point (about
  1.3 pixels at the corners of a 640-pixel image);
- low light: a third of the exposure with shot-like noise of std 0.06;
- high gain: the exposure a camera's auto-exposure restores in a dim room, at the price of noise
  of std 0.1 (a small sensor at a high ISO; more than any look the network was trained on);
- overexposure: 1.8 times the exposure, clipped;
- heavy JPEG: quality 15;
- defocus: a Gaussian blur of 1% of the image height;
- lens distortion left in: radial k1 = -0.08 (mild barrel) on an image that was not rectified,
  which the README asks users to do first; measured to show what skipping it costs;
- white balance off: a camera set for daylight under a warm lamp (red x1.3, blue x0.7), or
  for a lamp under cool daylight or LEDs (red x0.75, blue x1.25); and, beyond even the colour
  draws of the last stage (red over blue at most e^0.8), a camera set for daylight under a
  2700 K bulb (red x1.6, blue x0.55: red over blue e^1.07);
- another tone curve: the image's values raised to 1/1.8 (a flat, lifted curve) or to 1.8 (a
  contrasty one); the prior's display gamma stays within 0.8-1.25;
- washed-out colour: saturation halved toward each pixel's grey (a cheap sensor, a hazy
  lens, a camera's low-saturation profile), and cut to a quarter (beyond the colour draws'
  x0.35);
- veiling glare: stray light over the whole frame, 15% of full scale added, the rest scaled
  to fit.

Every image goes through the product path (``inference.api.Predictor``, calibrated, with its
camera). Reported per effect: the accuracy metrics of ``inference.evaluate``, the share of
images flagged not in the world, and the mean trust beside the share of answers entirely right
(count, shapes and colours: what trust is the probability of), to see whether the answers say
when they degrade.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bench.methods import git_commit, stamp
from bench.trust import to_pil, to_uint8
from inference.api import Predictor
from inference.evaluate import cat_scenes, held_out_photos, score
from renderer.photo import jpeg
from renderer.pinhole import Cameras
from renderer.raycast import pixel_centres
from training.calibrate import answer_right, product_answers

Effect = Callable[[torch.Tensor, Cameras, torch.Generator], torch.Tensor]


def _centres(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) pixel-centre u and v of an image shaped like ``like`` (..., H, W)."""
    h, w = like.shape[-2:]
    uv = pixel_centres(h, w, like.device).view(h, w, 2)
    return uv[..., 0], uv[..., 1]


def _pixel_grid(cams: Cameras, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) pixel-centre offsets u - cx and v - cy of each camera."""
    u, v = _centres(like)
    return u[None] - cams.principal[:, 0, None, None], v[None] - cams.principal[:, 1, None, None]


def _remap(img: torch.Tensor, du: torch.Tensor, dv: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (B, C, H, W) at pixel u + du, v + dv (bilinear, border clamped)."""
    h, w = img.shape[-2:]
    u, v = _centres(img)
    grid = torch.stack([(u + du) / w * 2 - 1, (v + dv) / h * 2 - 1], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def vignetting(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    du, dv = _pixel_grid(cams, img)
    r2 = (du / cams.focal[:, 0, None, None]) ** 2 + (dv / cams.focal[:, 1, None, None]) ** 2
    return img * (1 / (1 + r2) ** 2)[:, None]  # cos^4 of the angle off the axis


def motion_blur(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    n = max(3, round(0.02 * img.shape[-1]) | 1)
    kernel = torch.full((3, 1, 1, n), 1 / n)
    return F.conv2d(F.pad(img, (n // 2, n // 2, 0, 0), mode="replicate"), kernel, groups=3)


def chromatic_aberration(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    du, dv = _pixel_grid(cams, img)
    out = img.clone()
    for channel, scale in ((0, 1.004), (2, 0.996)):  # sample red from further out: it looks magnified
        out[:, channel:channel + 1] = _remap(img[:, channel:channel + 1], du * (1 / scale - 1), dv * (1 / scale - 1))
    return out


def low_light(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    return (img / 3 + 0.06 * torch.randn(img.shape, generator=g)).clamp(0, 1)


def high_gain(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    return (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1)


def overexposure(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    return (img * 1.8).clamp(0, 1)


def heavy_jpeg(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    back = jpeg(to_uint8(img), np.full(img.shape[0], 15))
    return torch.from_numpy(back).permute(0, 3, 1, 2).float() / 255


def defocus(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    sigma = 0.01 * img.shape[-2]
    r = int(3 * sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    img = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(F.pad(img, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def barrel(img: torch.Tensor, cams: Cameras, g: torch.Generator, k1: float = -0.08) -> torch.Tensor:
    du, dv = _pixel_grid(cams, img)
    x, y = du / cams.focal[:, 0, None, None], dv / cams.focal[:, 1, None, None]
    # the distorted image at normalised point p shows the scene at p_u with p = p_u (1 + k1 |p_u|^2):
    # invert by a few fixed-point steps
    xu, yu = x.clone(), y.clone()
    for _ in range(5):
        s = 1 + k1 * (xu ** 2 + yu ** 2)
        xu, yu = x / s, y / s
    return _remap(img, (xu - x) * cams.focal[:, 0, None, None], (yu - y) * cams.focal[:, 1, None, None])


def channel_gains(red: float, blue: float) -> Effect:
    gains = torch.tensor([red, 1.0, blue])[None, :, None, None]
    return lambda img, cams, g: (img * gains).clamp(0, 1)


def tone_curve(power: float) -> Effect:
    return lambda img, cams, g: img.clamp(0, 1) ** power


def washed_out(saturation: float) -> Effect:
    return lambda img, cams, g: saturation * img + (1 - saturation) * img.mean(1, keepdim=True)


def veiling_glare(img: torch.Tensor, cams: Cameras, g: torch.Generator) -> torch.Tensor:
    return 0.85 * img.clamp(0, 1) + 0.15


EFFECTS: dict[str, Effect | None] = {
    "none (the held-out photo set)": None, "vignetting (cos^4)": vignetting, "motion blur (2% of width)": motion_blur,
    "chromatic aberration (0.4%)": chromatic_aberration, "low light (1/3 exposure, noise 0.06)": low_light,
    "high gain (noise 0.1)": high_gain,
    "overexposure (x1.8, clipped)": overexposure, "JPEG quality 15": heavy_jpeg, "defocus (1% of height)": defocus,
    "lens distortion not rectified (k1 -0.08)": barrel,
    "white balance off, warm (R x1.3, B x0.7)": channel_gains(1.3, 0.7),
    "white balance off, cool (R x0.75, B x1.25)": channel_gains(0.75, 1.25),
    "white balance off, tungsten (R x1.6, B x0.55)": channel_gains(1.6, 0.55),
    "flat tone curve (values ^ 1/1.8)": tone_curve(1 / 1.8), "contrasty tone curve (values ^ 1.8)": tone_curve(1.8),
    "washed-out colour (saturation 50%)": washed_out(0.5), "washed-out colour (saturation 25%)": washed_out(0.25),
    "veiling glare (+15%)": veiling_glare,
}


def answers_under(predictor: Predictor, chunks: list, effect: Effect | None, seed: int,
                  then: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list:
    """The product path's answers to ``held_out_photos`` chunks with ``effect`` added (its
    randomness seeded by ``seed``; None: as rendered), and ``then`` applied to the pixels after
    it (e.g. a correction under study)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for images, _ in chunks:
        pixels = images.pixels if effect is None else effect(images.pixels, images.cameras, g)
        if then is not None:
            pixels = then(pixels)
        items += [(im, images.cameras.select(slice(i, i + 1))) for i, im in enumerate(to_pil(pixels))]
    return product_answers(predictor, items)


def run(predictor: Predictor, scenes: int, seed: int) -> list[dict]:
    world = predictor.world
    chunks = list(held_out_photos(world, scenes, seed))
    truth = cat_scenes([t for _, t in chunks])
    rows = []
    for name, effect in EFFECTS.items():
        answers = answers_under(predictor, chunks, effect, seed)
        pred = cat_scenes([a.scene for a in answers])
        flagged = torch.cat([~a.in_world for a in answers]).float().mean()
        trust = torch.cat([a.trust for a in answers]).mean()
        right = answer_right(pred, truth)[1].float().mean()  # what trust is the probability of
        rows.append({"effect": name, **score(pred, truth, world), "flagged": float(flagged), "trust": float(trust),
                     "right": float(right)})
        print(f"{name}: count {rows[-1]['count_accuracy']:.3f} shape {rows[-1]['shape_accuracy']:.3f} "
              f"flagged {float(flagged):.3f}", file=sys.stderr)
    return rows


def format_report(rows: list[dict], args) -> str:
    lines = [f"# Camera effects beyond the training looks ({stamp()}, commit {git_commit()})", "",
             f"Command: `python -m bench.camera_effects --scenes {args.scenes} --seed {args.seed}"
             f"{f' --out {args.out}' if args.out else ''}`; weights "
             f"`{args.weights}`; the held-out photo set (envelope cameras, prior looks), each effect added alone, "
             f"every image through the product path with its camera.", "",
             "| effect | count | shape | colour | position median / p90 cm | yaw median deg | flagged not in world | "
             "mean trust | answers right |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p, y = r["position_error_cm"], r["yaw_error_deg"]
        lines.append(f"| {r['effect']} | {100 * r['count_accuracy']:.1f}% | {100 * r['shape_accuracy']:.1f}% | "
                     f"{100 * r['color_accuracy']:.1f}% | {p['median']:.2f} / {p['p90']:.2f} | {y['median']:.1f} | "
                     f"{100 * r['flagged']:.1f}% | {r['trust']:.3f} | {r['right']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="weights/air.safetensors")
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="also write the report here (markdown)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.weights)
    if not predictor.takes_cameras:
        print("these weights know only their world's fixed camera; this bench needs a view network", file=sys.stderr)
        return 2
    report = format_report(run(predictor, args.scenes, args.seed), args)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
