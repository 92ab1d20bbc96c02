"""Test-time refinement: a few gradient steps on position and yaw through the ``soft`` renderer,
starting from the network's answer (render-and-compare, warm-started by amortised inference).

Shape, colour and count stay as inferred; only the continuous pose moves. The loss is the mean
squared difference between the soft rendering and the image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World

POSITION_LR = 0.003  # metres per Adam step
YAW_LR = 0.03  # radians per Adam step
# Edge blur (px) of the soft rendering compared with the image: narrower than the renderer's
# default 0.5, whose wider rim biases the fit against the box-filtered images (model card).
BLUR_PX = 0.25


def refine(scene: SceneBatch, images: torch.Tensor, world: World, steps: int,
           blur_sigma_px: float = BLUR_PX, stop: Callable[[], bool] | None = None) -> SceneBatch:
    """scene: B inferred scenes; images: (B, 3, S, S) float in [0, 1], S = world.image_size.
    Returns a new SceneBatch whose present objects' (x, y, yaw) minimise the image error.
    ``stop``: asked before each step; True ends the refinement there (the caller has gone)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if steps == 0 or not scene.present.any():
        return scene
    target = images.permute(0, 2, 3, 1).detach()
    xy = scene.position[..., :2].detach().clone().requires_grad_(True)
    yaw = scene.yaw.detach().clone().requires_grad_(True)
    z = scene.position[..., 2:].detach()
    opt = torch.optim.Adam([{"params": [xy], "lr": POSITION_LR}, {"params": [yaw], "lr": YAW_LR}])
    # Adam's steps are about lr long whatever the gradient, so a constant lr leaves the pose
    # jittering by ~lr around the optimum (3 mm: the network's own median error); decay it to 0.
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - t / steps)
    size = target.shape[1]
    for _ in range(steps):
        if stop is not None and stop():
            break
        current = SceneBatch(scene.present, scene.shape, scene.color, torch.cat([xy, z], -1), yaw)
        image = render(current, world, "soft", size, size, blur_sigma_px=blur_sigma_px)
        loss = ((image - target) ** 2).mean(dim=(1, 2, 3)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay.step()
    with torch.no_grad():
        e = world.placement_half_extent + world.table_size  # keep answers finite and near the table
        xy.clamp_(-e, e)
    return SceneBatch(scene.present, scene.shape, scene.color, torch.cat([xy.detach(), z], -1), yaw.detach())
