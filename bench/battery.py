"""Images that are not tabletop scenes of this world: what ``in_world`` must flag.

    from bench.battery import battery
    for kind, image in battery(World(), seed=0, per_kind=40): ...

Kinds (each ``per_kind`` images, seeded):
- ``noise``: uniform, Gaussian and salt-and-pepper noise, colour and grey;
- ``blank``: one colour all over (greys in the table's range among them);
- ``gradient``: linear and radial blends between two random colours;
- ``natural``: photos and drawings shipped inside the scikit-image wheel (astronaut, coffee,
  text, ...), whole, cropped and turned (read as files; skimage itself is not imported);
- ``own-crop``: our own photo renders of in-world scenes from the world's camera, cropped to a
  quarter of the area and enlarged (objects far larger than any of the world's), or turned by
  90 or 180 degrees (the table hanging from the top);
- ``foreign``: our own renderer's photos of scenes whose objects are outside the shape set:
  flat discs, tall poles, long flat ramps, giant balls and cubes, spikes, in the world's colours.
All come without a camera (the service assumes the world's default camera), at 320 x 240 or
their own size.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from renderer.appearance import LookPrior, sample_looks, shade_palette
from renderer.photo import photo_jpeg
from renderer.pinhole import spec_cameras
from renderer.prior import sample_scenes
from renderer.world import ShapeSpec, World

SIZE = (240, 320)  # height, width of the generated images
FOREIGN_SHAPES = (ShapeSpec("cylinder", (0.22, 0.22, 0.025), None),  # a disc
                  ShapeSpec("box", (0.04, 0.04, 0.30), 90.0),  # a pole
                  ShapeSpec("wedge", (0.34, 0.22, 0.04), 360.0),  # a long flat ramp
                  ShapeSpec("sphere", (0.26, 0.26, 0.26), None),  # a giant ball
                  ShapeSpec("cone", (0.06, 0.06, 0.32), None),  # a spike
                  ShapeSpec("cube", (0.28, 0.28, 0.28), 90.0))  # a giant cube


def sample_image_files() -> list[Path]:
    """The image files inside the installed scikit-image package ([] when it is not installed)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0]) / "data"
    return sorted(p for p in root.glob("*") if p.suffix in (".png", ".jpg") and p.stat().st_size > 2000)


def noise(rng: np.random.Generator) -> Image.Image:
    h, w = SIZE
    kind = rng.integers(3)
    if kind == 0:
        a = rng.random((h, w, 3))
    elif kind == 1:
        a = np.clip(rng.normal(rng.random(), rng.uniform(0.05, 0.3), (h, w, 3)), 0, 1)
    else:
        a = np.full((h, w, 3), rng.random())
        salt = rng.random((h, w)) < rng.uniform(0.05, 0.3)
        a[salt] = rng.integers(0, 2, (int(salt.sum()), 1))
    if rng.random() < 0.3:
        a = a.mean(-1, keepdims=True).repeat(3, -1)
    return Image.fromarray((a * 255).astype(np.uint8))


def blank(rng: np.random.Generator) -> Image.Image:
    colour = rng.random(3) if rng.random() < 0.5 else np.full(3, rng.uniform(0.3, 0.75))
    return Image.new("RGB", SIZE[::-1], tuple(int(c * 255) for c in colour))


def gradient(rng: np.random.Generator) -> Image.Image:
    h, w = SIZE
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(angle) + y * np.sin(angle)
    else:
        t = np.hypot(x - rng.random(), y - rng.random())
    t = (t - t.min()) / (t.max() - t.min() + 1e-9)
    a, b = rng.random(3), rng.random(3)
    return Image.fromarray(((a + (b - a) * t[..., None]) * 255).astype(np.uint8))


def natural(files: list[Path], rng: np.random.Generator, i: int) -> Image.Image:
    with Image.open(files[i % len(files)]) as im:
        im = im.convert("RGB")
    turn = i // len(files)
    if turn % 2:  # a random crop of a third to two thirds of each side
        cw, ch = (int(s * rng.uniform(0.33, 0.67)) for s in im.size)
        x, y = int(rng.integers(0, im.width - cw + 1)), int(rng.integers(0, im.height - ch + 1))
        im = im.crop((x, y, x + cw, y + ch))
    if turn >= 2:
        im = im.rotate(90 * int(rng.integers(1, 4)), expand=True)
    return im


def photos(world: World, n: int, g: torch.Generator, counts: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """(n, H, W, 3) uint8 photo renders of prior scenes of ``world`` (``counts`` objects) from its camera."""
    prior = LookPrior()
    cams = spec_cameras(world.camera, n, *SIZE)
    scene = sample_scenes(world, n, generator=g, counts=list(counts))
    look = sample_looks(prior, n, g)
    shaded = replace(scene, albedo=shade_palette(scene, world, prior, g))
    return photo_jpeg(shaded, world, cams, look, g, detail=2)


def own_crop(image: np.ndarray, rng: np.random.Generator, i: int) -> Image.Image:
    im = Image.fromarray(image)
    if i % 3:  # a quarter of the area, enlarged back to the full size
        w, h = im.width // 2, im.height // 2
        x, y = int(rng.integers(w // 4, w)), int(rng.integers(h // 4, h))
        return im.crop((x - w // 2, y - h // 2, x + w // 2, y + h // 2)).resize(im.size, Image.Resampling.BICUBIC)
    return im.rotate(90 if rng.random() < 0.5 else 180, expand=True)


def battery(world: World, seed: int = 0, per_kind: int = 40) -> list[tuple[str, Image.Image]]:
    """``per_kind`` images of each kind (``natural`` only when scikit-image is installed)."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    out = [("noise", noise(rng)) for _ in range(per_kind)]
    out += [("blank", blank(rng)) for _ in range(per_kind)]
    out += [("gradient", gradient(rng)) for _ in range(per_kind)]
    files = sample_image_files()
    out += [("natural", natural(files, rng, i)) for i in range(per_kind)] if files else []
    own = photos(world, per_kind, g)
    out += [("own-crop", own_crop(own[i], rng, i)) for i in range(per_kind)]
    foreign = replace(world, shapes=FOREIGN_SHAPES)
    try:
        strange = photos(foreign, per_kind, g)
    except ValueError:  # three of the giant shapes do not always fit on the table
        strange = photos(foreign, per_kind, g, counts=(1, 2))
    out += [("foreign", Image.fromarray(im)) for im in strange]
    return out
