"""Write the demo page's sample images: ``python -m app.samples`` (committed; rerun to refresh).

Two kinds, all seeded (a rerun writes the same bytes):

- ``sample-K.png``: scenes drawn from the prior (1, 2 and 3 objects) at 256x256, from the
  world's fixed camera under its flat look (``renderer.render``, what the shipped weights know).
- ``camera-K.png``: photo-like scenes seen from other cameras of the envelope (other azimuths,
  elevations 40-72 degrees, distances 0.95-1.35 m, 4:3 and 16:9 images), each under a look
  drawn from the training prior (``renderer.photo``, the renderer ``/render`` uses for a camera
  or a look). Only weights that take a camera (a view network) answer them; others refuse the
  camera with a 422.

``samples.json`` lists every sample with its ground truth (objects in the table frame) and,
for the camera samples, the image's ``camera`` (the ``/infer`` camera JSON: position,
orientation of the ROS optical frame, fx, fy, cx, cy, width, height), ``view`` (what that
camera is: azimuth, elevation, distance, fov, where its axis meets the table) and ``look`` (``{"seed": S}``: ``/render`` with that look draws the same lights, table and
backdrop; the objects' own shades and the sensor noise are drawn after it from the same seed,
and the noise and JPEG quality are capped to keep the files small: ``MAX_NOISE_STD``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from app.images import encode_png
from renderer.appearance import LookPrior, sample_looks, shade_palette
from renderer.camera import camera_dict
from renderer.photo import photo_jpeg
from renderer.pinhole import canonical_cameras, envelope_violations, look_at_cameras
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World

OUT = Path(__file__).resolve().parent / "static" / "samples"
# Kept small: the camera samples' sensor noise is capped (the prior's reaches 0.03 of full scale)
# and each is JPEG-compressed (at its look's quality, at most 85; 85 where the look has none),
# which keeps the PNGs at 15-30 KB instead of up to 150 KB.
MAX_NOISE_STD = 0.004
MAX_JPEG_QUALITY = 85

# (azimuth_deg, elevation_deg, distance_m, vertical fov_deg, roll_deg, width, height, objects,
#  look_at x, y in metres): cameras of the envelope, none of them the world's fixed one
CAMERA_VIEWS = (
    (90.0, 45.0, 1.10, 50.0, 0.0, 320, 240, 2, 0.02, -0.03),
    (205.0, 65.0, 0.95, 45.0, 5.0, 320, 180, 3, -0.03, 0.02),
    (310.0, 40.0, 1.35, 40.0, 0.0, 320, 240, 1, 0.0, 0.04),
    (20.0, 72.0, 1.20, 55.0, -4.0, 320, 180, 3, 0.04, 0.0),
)


def truth(scene: SceneBatch, world: World) -> list[dict]:
    """The present objects of scene 0 as the samples.json truth."""
    return [{"shape": world.shape_names[int(scene.shape[0, i])], "color": world.color_names[int(scene.color[0, i])],
             "position": dict(zip("xyz", (round(float(v), 4) for v in scene.position[0, i]))),
             "yaw_deg": round(math.degrees(float(scene.yaw[0, i])), 1)}
            for i in range(scene.present.shape[1]) if bool(scene.present[0, i])]


def camera_sample(world: World, view: tuple, seed: int) -> tuple[bytes, SceneBatch, dict]:
    """One photo-like sample: PNG bytes, its scene, and its camera as JSON (``camera_dict``)."""
    azimuth, elevation, distance, fov, roll, width, height, count, tx, ty = view
    az, el = math.radians(azimuth), math.radians(elevation)
    target = torch.tensor([[tx, ty, 0.0]])
    eye = target + distance * torch.tensor([[math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]])
    cams = look_at_cameras(eye, target, torch.tensor([fov]), height, width, torch.tensor([roll]))
    problem = envelope_violations(cams, world.envelope)[0]
    if problem:
        raise ValueError(f"sample camera {view}: {problem}")
    # every object wholly inside both the image and the network's canonical view
    canonical = canonical_cameras(cams.position, world.image_size, world.view_half_width)
    g = torch.Generator().manual_seed(seed)
    scene = sample_scenes(world, 1, generator=g, counts=count, cameras=(cams, canonical))
    prior = LookPrior()
    look = sample_looks(prior, 1, torch.Generator().manual_seed(seed))  # = /render's look {"seed": seed}
    quality = torch.where(look.jpeg_quality > 0, look.jpeg_quality.clamp(max=MAX_JPEG_QUALITY), MAX_JPEG_QUALITY)
    look = replace(look, noise_std=look.noise_std.clamp(max=MAX_NOISE_STD), jpeg_quality=quality)
    shaded = replace(scene, albedo=shade_palette(scene, world, prior, g))
    rgb = photo_jpeg(shaded, world, cams, look, g, detail=2)[0]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue(), scene, camera_dict(cams)


CAMERA_INPUT = ("position", "orientation", "fx", "fy", "cx", "cy", "width", "height")
CAMERA_VIEW = ("elevation_deg", "distance_m", "fov_deg", "look_at")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write into")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (fixed-camera samples)")
    parser.add_argument("--seed", type=int, default=7, help="prior seed")
    args = parser.parse_args(argv)

    world = World()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for k, count in enumerate((1, 2, 3, 3, 2)):
        scene = sample_scenes(world, 1, seed=args.seed + k, counts=count)
        with torch.no_grad():
            image = render(scene, world, "hard", args.size, args.size)[0]
        name = f"sample-{k}.png"
        (args.out / name).write_bytes(encode_png((image * 255).round().to(torch.uint8).numpy()))
        manifest.append({"file": name, "count": count, "objects": truth(scene, world)})
    for k, view in enumerate(CAMERA_VIEWS):
        seed = 1000 + args.seed + k
        png, scene, camera = camera_sample(world, view, seed)
        name = f"camera-{k}.png"
        (args.out / name).write_bytes(png)
        objects = truth(scene, world)
        view_info = {"azimuth_deg": view[0], **{key: camera[key] for key in CAMERA_VIEW}}
        manifest.append({"file": name, "count": len(objects), "objects": objects,
                         "camera": {key: camera[key] for key in CAMERA_INPUT}, "view": view_info,
                         "look": {"seed": seed}})
    (args.out / "samples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} samples to {args.out}")


if __name__ == "__main__":
    main()
