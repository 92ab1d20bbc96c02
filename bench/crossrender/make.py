"""Make the development set: specs, labels, then the Cycles renders (resumable).

Layout of ``out``: ``specs.json`` (what Blender renders, look included), ``labels.json`` (what
a scorer needs: each image's file, camera and objects), ``images/NNNNNN.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.crossrender.blender import render_specs
from bench.crossrender.specs import DEV_ENVELOPE, sample_specs
from renderer.world import World

LABEL_KEYS = ("shape", "color", "position", "yaw_deg")


def labels_from_specs(specs: list[dict], world: World, seed: int, todays_camera: bool = False,
                      look: str = "dev") -> dict:
    """The scorer's view of the set: the look's name, the truth and the camera."""
    return {
        "seed": seed,
        "look": look,
        "cameras": "today's fixed camera (world.camera)" if todays_camera else "issue 11's envelope",
        "renderer": "Blender Cycles (bench/blender_scene.py)",
        "envelope": {k: v for k, v in vars(DEV_ENVELOPE).items() if k in
                     ("elevation_deg", "distance", "look_at_radius", "fov_deg", "roll_deg")},
        "shapes": list(world.shape_names),
        "colors": list(world.color_names),
        "images": [{"file": f"images/{s['file']}", "aspect": s["aspect"], "camera": s["camera"],
                    "objects": [{k: o[k] for k in LABEL_KEYS} for o in s["objects"]]} for s in specs],
    }


def write_set(out: Path, scenes: int, seed: int, world: World, todays_camera: bool = False,
              look: str = "dev", samples: int | None = None) -> list[dict]:
    """Write specs.json and labels.json (refusing to replace a different set); return the specs."""
    specs = sample_specs(world, scenes, seed, todays_camera, look, samples)
    text = json.dumps(specs, indent=1)
    path = out / "specs.json"
    if path.exists() and path.read_text() != text:
        raise ValueError(f"{path} holds another set (not --scenes {scenes} --seed {seed} of this code); "
                         "remove the folder or pass the same arguments")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    (out / "labels.json").write_text(json.dumps(labels_from_specs(specs, world, seed, todays_camera, look), indent=1))
    return specs


def make(out: Path, scenes: int, seed: int, threads: int = 1, chunk: int = 25, render: bool = True,
         todays_camera: bool = False, look: str = "dev", samples: int | None = None) -> None:
    world = World()
    specs = write_set(out, scenes, seed, world, todays_camera, look, samples)
    counts = [len(s["objects"]) for s in specs]
    print(f"{out}/specs.json, labels.json: {scenes} scenes, look {look}, objects per scene "
          + ", ".join(f"{k}: {counts.count(k)}" for k in range(world.max_objects + 1))
          + f"; {specs[0]['look']['samples']} samples, denoising {'on' if specs[0]['look']['denoise'] else 'off'}")
    if render:
        render_specs(specs, out / "images", "photo", threads, chunk)
