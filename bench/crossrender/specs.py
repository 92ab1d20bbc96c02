"""Scene specs of the cross-renderer development set: camera, objects and look, all seeded.

Every scene ``i`` of a set with seed ``s`` is drawn from its own generators (torch for the
camera and objects, numpy for the look), seeded from ``(s, i)`` far from every dataset and
held-out seed, so the first K scenes of a larger set are the K scenes of a smaller one.

- Camera: ``renderer.pinhole.sample_cameras`` on ``DEV_ENVELOPE`` (issue 11's stated envelope,
  inside the model's supported ``CameraEnvelope``), no training margin; image aspect 1:1, 4:3
  or 16:9 with the short side ``SHORT_SIDE`` pixels (the fov spans the height, the short side).
- Objects: ``renderer.prior.sample_scenes`` with that camera, so every object's bounding
  volume lies inside the image (positions redrawn; an object that finds no place in view is
  left out, as in the training prior).
- Look: a sun or an area light (direction, colour temperature 3000..7500 K, strength), an
  ambient sky colour, a grey or wooden table with texture, a floor beyond it, each object's
  shade of its named colour, roughness and specular, exposure and sensor noise. These ranges
  are this file's own, not ``renderer.appearance.LookPrior``'s: the set must not share the
  training look's choices.

A spec is plain JSON and self-contained (``bench/blender_scene.py`` reads it without torch):
``{"id", "file", "table_size", "camera": {...}, "objects": [...], "look": {...}}``.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from renderer.appearance import kelvin_rgb
from renderer.camera import cameras_from_dict, matrix_to_quat
from renderer.pinhole import Cameras, sample_cameras, spec_cameras
from renderer.prior import sample_scenes
from renderer.world import CameraEnvelope, World

SHORT_SIDE = 160
ASPECTS = {"1:1": (160, 160), "4:3": (213, 160), "16:9": (284, 160)}  # name -> (width, height)
DEV_ENVELOPE = CameraEnvelope(elevation_deg=(35.0, 80.0), distance=(0.8, 1.5), look_at_radius=0.10,
                              fov_deg=(35.0, 65.0), roll_deg=(-10.0, 10.0))
SEED_BASE = 2**42  # datasets seed chunk i with seed * 1_000_003 + i, evaluate uses 2**40 + seed


@dataclass(frozen=True)
class LookRanges:
    """The development set's look; every (low, high) is drawn uniformly per scene.

    sun_probability: chance of a sun (else a square area light).
    light_elevation_deg, light_azimuth_deg: the light's direction above the table and round it
        (table frame, degrees from +x).
    temperature_k: the light's colour temperature (``renderer.appearance.kelvin_rgb``).
    sun_strength: W/m^2; sun_angle_deg: its angular diameter (shadow softness).
    area_distance_m, area_size_m: the area light's distance from the table centre and side;
        its power is set for an irradiance at the table like the sun's (area_irradiance).
    ambient_strength: the world (sky/room) light; ambient colour is a pale tint.
    wood_probability: chance of a wooden table (else grey); table_value: grey table brightness;
        wood_value: wooden table brightness.
    roughness, specular: Principled BSDF roughness and "Specular IOR Level" of the objects.
    hue_deg, saturation, value: each object's shade of its named colour (hue shift, factors).
    exposure: stops; noise_sigma: Gaussian sensor noise (display units, [0, 1]).
    samples: Cycles path samples per pixel (adaptive), denoise: OpenImageDenoise on.
    """

    sun_probability: float = 0.6
    light_elevation_deg: tuple[float, float] = (25.0, 80.0)
    light_azimuth_deg: tuple[float, float] = (0.0, 360.0)
    temperature_k: tuple[float, float] = (3000.0, 7500.0)
    sun_strength: tuple[float, float] = (2.0, 4.5)
    sun_angle_deg: tuple[float, float] = (2.0, 20.0)
    area_distance_m: tuple[float, float] = (1.2, 2.5)
    area_size_m: tuple[float, float] = (0.3, 1.2)
    area_irradiance: tuple[float, float] = (2.0, 4.5)
    ambient_strength: tuple[float, float] = (0.15, 0.6)
    wood_probability: float = 0.3
    table_value: tuple[float, float] = (0.35, 0.75)
    wood_value: tuple[float, float] = (0.35, 0.7)
    roughness: tuple[float, float] = (0.2, 0.75)
    specular: tuple[float, float] = (0.2, 0.6)
    hue_deg: tuple[float, float] = (-8.0, 8.0)
    saturation: tuple[float, float] = (0.8, 1.05)
    value: tuple[float, float] = (0.8, 1.1)
    exposure: tuple[float, float] = (-0.4, 0.4)
    noise_sigma: tuple[float, float] = (0.0, 0.015)
    samples: int = 32
    denoise: bool = True


# Named looks of a set (``make --look``). "dev" is the development set's. "shifted" is issue 13's
# deliberately different look, for adaptation: one warm, low sun from one side of the table
# (x < 0, y < 0), glossy objects, a dark wooden table; everything else as "dev".
LOOKS = {
    "dev": LookRanges(),
    "shifted": LookRanges(sun_probability=1.0, light_elevation_deg=(25.0, 40.0), light_azimuth_deg=(200.0, 250.0),
                          temperature_k=(3000.0, 3400.0), sun_strength=(3.0, 4.5), sun_angle_deg=(2.0, 6.0),
                          wood_probability=1.0, wood_value=(0.15, 0.3), roughness=(0.05, 0.15),
                          specular=(0.7, 0.9)),
}


def scene_seed(seed: int, index: int) -> int:
    return SEED_BASE + seed * 1_000_003 + index


def sample_spec(world: World, seed: int, index: int, ranges: LookRanges = LookRanges(),
                envelope: CameraEnvelope = DEV_ENVELOPE, todays_camera: bool = False) -> dict:
    """Scene ``index`` of the set with ``seed``: a JSON-ready spec (see the module docstring).

    todays_camera: use the world's fixed camera (``world.camera``, square images) instead of
    drawing one from the envelope: the control set, Blender's look from the camera today's
    network was trained for."""
    s = scene_seed(seed, index)
    g = torch.Generator().manual_seed(s)
    aspect = list(ASPECTS)[int(torch.randint(len(ASPECTS), (1,), generator=g))]
    if todays_camera:
        aspect = "1:1"
    width, height = ASPECTS[aspect]
    cams = (spec_cameras(world.camera, 1, height, width) if todays_camera
            else sample_cameras(envelope, 1, g, height, width, margin=False))
    scene = sample_scenes(world, 1, generator=g, cameras=[cams])
    rng = np.random.default_rng(s)
    objects = []
    for k in range(int(scene.count[0])):
        shape = world.shapes[int(scene.shape[0, k])]
        color = world.colors[int(scene.color[0, k])]
        x, y, z = (float(v) for v in scene.position[0, k])
        objects.append({
            "shape": shape.name, "color": color.name, "size": list(shape.size),
            "position": {"x": x, "y": y, "z": z}, "yaw_deg": math.degrees(float(scene.yaw[0, k])),
            **object_look(color.rgb, rng, ranges),
        })
    return {"id": index, "file": f"{index:06d}.png", "aspect": aspect, "table_size": world.table_size,
            "camera": camera_dict(cams, roll_check=True), "objects": objects, "look": scene_look(rng, s, ranges)}


def camera_dict(cams: Cameras, roll_check: bool = False) -> dict:
    """The first camera of ``cams`` as a user states it: position (table frame, m), the ROS
    optical frame's orientation (x, y, z, w), pinhole intrinsics; plus, for reporting, the
    envelope quantities (elevation, distance and azimuth of the camera from its look-at point,
    vertical fov, roll) and the look-at point."""
    d = {k: float(v[0]) for k, v in cams.describe().items()}
    pos = cams.position[0].double()
    axis = cams.rotation[0, :, 2].double()
    look_at = pos + d["distance"] * axis
    offset = pos - look_at
    return {
        "position": dict(zip("xyz", pos.tolist())),
        "orientation": dict(zip("xyzw", matrix_to_quat(cams.rotation[0].double()))),
        "fx": float(cams.focal[0, 0]), "fy": float(cams.focal[0, 1]),
        "cx": float(cams.principal[0, 0]), "cy": float(cams.principal[0, 1]),
        "width": cams.width, "height": cams.height,
        "optical_frame": "x right, y down, z forward",
        "fov_deg": d["fov_deg"], "elevation_deg": d["elevation_deg"], "distance_m": d["distance"],
        "azimuth_deg": math.degrees(math.atan2(float(offset[1]), float(offset[0]))) % 360.0,
        "roll_deg": d["roll_deg"], "look_at": dict(zip("xyz", look_at.tolist())),
    }


def object_look(rgb: tuple[float, float, float], rng: np.random.Generator, r: LookRanges) -> dict:
    """One object's shade of its named colour (display sRGB) and its surface."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    h = (h + rng.uniform(*r.hue_deg) / 360.0) % 1.0
    s = min(1.0, s * rng.uniform(*r.saturation))
    v = min(1.0, v * rng.uniform(*r.value))
    return {"rgb": list(colorsys.hsv_to_rgb(h, s, v)), "roughness": float(rng.uniform(*r.roughness)),
            "specular": float(rng.uniform(*r.specular))}


def scene_look(rng: np.random.Generator, seed: int, r: LookRanges) -> dict:
    """Light, ambient, table, floor, exposure, noise and render settings of one scene."""
    kelvin = float(rng.uniform(*r.temperature_k))
    light = {"azimuth_deg": float(rng.uniform(*r.light_azimuth_deg)), "elevation_deg": float(rng.uniform(*r.light_elevation_deg)),
             "temperature_k": kelvin, "rgb": kelvin_rgb(torch.tensor(kelvin)).tolist()}
    if rng.uniform() < r.sun_probability:
        light.update(type="sun", strength=float(rng.uniform(*r.sun_strength)),
                     angle_deg=float(rng.uniform(*r.sun_angle_deg)))
    else:
        dist = float(rng.uniform(*r.area_distance_m))
        # a small area light of power P gives about P / (pi d^2) W/m^2 straight below it
        light.update(type="area", distance_m=dist, size_m=float(rng.uniform(*r.area_size_m)),
                     power=float(rng.uniform(*r.area_irradiance)) * math.pi * dist**2)
    sky = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.65), rng.uniform(0.0, 0.25), rng.uniform(0.7, 1.0))
    if rng.uniform() < r.wood_probability:
        base = colorsys.hsv_to_rgb(rng.uniform(0.06, 0.11), rng.uniform(0.35, 0.6), rng.uniform(*r.wood_value))
        darker = rng.uniform(0.7, 0.88)
        table = {"kind": "wood", "rgb": list(base), "rgb2": [c * darker for c in base],
                 "scale": float(rng.uniform(6.0, 12.0)), "distortion": float(rng.uniform(1.0, 3.0))}
    else:
        base = colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.06), rng.uniform(*r.table_value))
        darker = rng.uniform(0.85, 0.97)
        table = {"kind": "grey", "rgb": list(base), "rgb2": [c * darker for c in base],
                 "scale": float(rng.uniform(8.0, 60.0))}
    table.update(roughness=float(rng.uniform(0.35, 0.85)), specular=float(rng.uniform(0.2, 0.5)))
    floor_rgb = colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.35), rng.uniform(0.08, 0.6))
    floor = {"kind": "grey", "rgb": list(floor_rgb), "rgb2": [c * 0.8 for c in floor_rgb],
             "scale": float(rng.uniform(2.0, 10.0)), "roughness": 0.8, "specular": 0.3}
    return {"light": light, "ambient": {"rgb": list(sky), "strength": float(rng.uniform(*r.ambient_strength))},
            "table": table, "floor": floor, "exposure": float(rng.uniform(*r.exposure)),
            "noise_sigma": float(rng.uniform(*r.noise_sigma)), "samples": r.samples, "denoise": r.denoise,
            "seed": seed % 2**31}


def sample_specs(world: World, scenes: int, seed: int, todays_camera: bool = False, look: str = "dev",
                 samples: int | None = None) -> list[dict]:
    """Scenes 0..scenes-1 of the set with ``seed`` under the named look (``LOOKS``); ``samples``
    overrides the look's Cycles samples per pixel (the scenes and looks stay the same)."""
    ranges = LOOKS[look] if samples is None else replace(LOOKS[look], samples=samples)
    return [sample_spec(world, seed, i, ranges, todays_camera=todays_camera) for i in range(scenes)]


def objects_in_view(spec: dict, world: World, margin_px: float = 0.0) -> bool:
    """Whether every object's bounding box (its 8 corners at its yaw) projects inside the image
    and lies in front of the camera."""
    cams = cameras_from_dict(spec["camera"])
    for o in spec["objects"]:
        sx, sy, sz = o["size"]
        c, s = math.cos(math.radians(o["yaw_deg"])), math.sin(math.radians(o["yaw_deg"]))
        p = o["position"]
        corners = [(p["x"] + c * dx - s * dy, p["y"] + s * dx + c * dy, p["z"] + dz)
                   for dx in (-sx / 2, sx / 2) for dy in (-sy / 2, sy / 2) for dz in (-sz / 2, sz / 2)]
        uv, depth = cams.project(torch.tensor([corners], dtype=torch.float32))
        w, h = spec["camera"]["width"], spec["camera"]["height"]
        if not ((uv[..., 0] >= margin_px) & (uv[..., 0] <= w - margin_px) & (uv[..., 1] >= margin_px)
                & (uv[..., 1] <= h - margin_px) & (depth > 0)).all():
            return False
    return True
