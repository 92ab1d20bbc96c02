"""Write the demo page's sample images: ``python -m app.samples`` (committed; rerun to refresh).

Draws a few seeded scenes from the prior (1, 2 and 3 objects), renders them at 256x256 and
writes ``app/static/samples/sample-K.png`` plus ``samples.json`` with each scene's ground truth.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from app.images import encode_png
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.world import World

OUT = Path(__file__).resolve().parent / "static" / "samples"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write into")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
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
        objects = [{"shape": world.shape_names[int(scene.shape[0, i])], "color": world.color_names[int(scene.color[0, i])],
                    "position": dict(zip("xyz", (round(float(v), 4) for v in scene.position[0, i]))),
                    "yaw_deg": round(math.degrees(float(scene.yaw[0, i])), 1)}
                   for i in range(count)]
        manifest.append({"file": name, "count": count, "objects": objects})
    (args.out / "samples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} samples to {args.out}")


if __name__ == "__main__":
    main()
