"""Issue 11: how do the shipped weights read meshes shaded with another renderer's normals?

    python -m experiments.mesh_normals [--weights W] [--scenes 400] [--seed 777]

Draws held-out scenes, cameras and looks as the held-out photo set does, every look smooth-shaded,
and renders each scene three times, alike in everything (the same random numbers) but the
normals the shading interpolates: the shapes' true normals (what the network mostly trained on),
a cone's apex averaged straight up (``Look.apex_up``: its top shades like a dome, as Blender's
smooth cones), and every edge soft (``Look.welded``: vertex normals averaged over all faces
meeting at a point, as trimesh, Open3D and pyrender give by default). Scores each with
``inference.evaluate`` (the mirror reading as the weights say) and prints count, shape,
position and the shape confusion. The model card quotes runs of this.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from experiments.cast_shadows import arguments, compare_looks
from renderer.appearance import LookPrior


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__.split("\n\n")[0])
    smooth = lambda look: replace(look, smooth=torch.ones_like(look.smooth))  # noqa: E731
    compare_looks(args, LookPrior(), {
        "true normals": smooth,
        "apex averaged": lambda look: replace(smooth(look), apex_up=torch.ones_like(look.smooth)),
        "edges soft": lambda look: replace(smooth(look), welded=torch.ones_like(look.smooth)),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
