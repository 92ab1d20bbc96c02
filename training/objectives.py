"""Objectives for training the inference network, behind one interface (``Objective``).

``Amortised``: ``inference.amortised.amortised_loss`` on labelled prior samples (the
orderings, the attention target and why: that module). The ELBO lives in ``training/elbo.py``.
DAIR's helpers (``nearest_first``, ``dair_residuals``) are here: only training uses them.
"""

from __future__ import annotations

import math

import torch

from inference.amortised import amortised_loss
from inference.checkpoint import save_weights
from inference.infer import infer, to_scene
from inference.network import AIR
from inference.views import ViewInput
from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World


@torch.no_grad()
def nearest_first(scene: SceneBatch) -> SceneBatch:
    """The same scenes with present objects reordered nearest to the camera first (smallest x:
    the camera looks from the -x side), absent slots after.

    DAIR is trained on one slot order (see ``amortised_loss``), and that order must be one the
    network can see: in the prior's own order which object sits in slot 0 is arbitrary, so step
    0 could only learn the average position. Nearest first is readable from the image and never
    occluded by a later object."""
    key = torch.where(scene.present, scene.position[..., 0], torch.full_like(scene.position[..., 0], math.inf))
    order = torch.argsort(key, dim=1, stable=True)
    take = lambda x: torch.gather(x, 1, order if x.dim() == 2 else order[..., None].expand_as(x))  # noqa: E731
    return SceneBatch(take(scene.present), take(scene.shape), take(scene.color), take(scene.position),
                      take(scene.yaw))


def earlier_slots(scene: SceneBatch, t: int) -> SceneBatch:
    """The same scenes with only the objects in slots < t present: what DAIR has explained
    before step t (t = 0: nothing, the empty table)."""
    slots = torch.arange(scene.num_slots, device=scene.present.device)
    return SceneBatch(scene.present & (slots < t), scene.shape, scene.color, scene.position, scene.yaw)


def dair_residuals(images: torch.Tensor, scene: SceneBatch, world: World) -> list[torch.Tensor]:
    """DAIR's per-step inputs for teacher-forced training, in the scene's own slot order.

    Step t sees the image minus a ``hard`` rendering (at the image's size, as
    ``inference.infer.infer`` renders its own finds) of the true objects in slots < t; step 0
    sees the image minus the empty table. images: (B, 3, S, S) in [0, 1]; scene: B scenes,
    present slots first. Returns N tensors (B, 3, S, S).
    """
    s = images.shape[-1]
    return [images - render(earlier_slots(scene, t), world, "hard", s, s).permute(0, 3, 1, 2)
            for t in range(scene.num_slots)]


# ---- the interface training.train runs ---------------------------------------------------------
class Objective:
    """What ``training.train``'s loop calls, the same for every objective.

    ``model``: the network trained. ``loss(images, scene, index, it)``: images (B, 3, S, S) in
    [0, 1] (for a photo dataset, an ``inference.views.ViewInput``), the true scenes (B, N) (objectives that learn without labels ignore them), the
    dataset rows ``index`` (B,) and the step ``it`` -> (scalar loss to minimise, per-term floats).
    ``param_groups()``: Adam's parameter groups (a group may carry ``lr_scale``, its learning rate
    over the schedule's). ``predict``: images -> SceneBatch, for validation (eval mode is the
    caller's). ``state()`` / ``load_state``: what a checkpoint keeps beside the model.
    ``export``: write the model as shipped weights.
    """

    kind = "air"  # the key of the model's config in config.json and the weights' .json

    def __init__(self, model: torch.nn.Module, world: World) -> None:
        self.model, self.world = model, world

    def loss(self, images: torch.Tensor, scene: SceneBatch, index, it: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.model.parameters())}]

    def to(self, device: torch.device) -> Objective:
        """Move what the objective trains (the model; subclasses add their own modules) to ``device``."""
        self.model.to(device)
        return self

    def predict(self, images: torch.Tensor | ViewInput) -> SceneBatch:
        if isinstance(images, ViewInput):  # a photo dataset's views
            return to_scene(infer(self.model, images.pixels, self.world, images).objects, self.world)
        return to_scene(infer(self.model, images, self.world).objects, self.world)

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def export(self, path: str, meta: dict) -> None:
        save_weights(self.model, self.world, path, meta)


class Amortised(Objective):
    """``amortised_loss`` on labelled prior samples; DAIR models read their teacher-forced
    residuals from ``canvases`` (``training.dair_canvas.CanvasStore``) or render them per batch."""

    def __init__(self, model: AIR, world: World, attention_weight: float = 1.0, canvases=None) -> None:
        super().__init__(model, world)
        self.attention_weight, self.canvases = attention_weight, canvases

    def loss(self, images: torch.Tensor | ViewInput, scene: SceneBatch, index, it: int) -> tuple[torch.Tensor, dict[str, float]]:
        if isinstance(images, ViewInput):  # a photo dataset's views (view_inputs network)
            return amortised_loss(self.model, images.pixels, scene, self.world,
                                  attention_weight=self.attention_weight, view=images)
        residuals = None
        if self.model.config.dair:
            scene = nearest_first(scene)
            residuals = (self.canvases.residuals(images, index) if self.canvases is not None
                         else dair_residuals(images, scene, self.world))
        return amortised_loss(self.model, images, scene, self.world, residuals=residuals,
                              attention_weight=self.attention_weight)
