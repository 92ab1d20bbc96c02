"""Greedy amortised inference: images -> objects in one forward pass.

Steps run batched; an image stops at its first z_pres = 0 (it is masked from then on, and the
loop ends as soon as every image has stopped), so simple scenes cost fewer steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from inference.distributions import Latents
from inference.network import AIR, Context
from inference.views import ViewInput, to_table
from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World


class Inference(NamedTuple):
    """Result for B images, T = max_steps slots (present ones first).

    objects: Latents with pres (B, T) 0/1, shape, color (B, T), position (B, T, 2), yaw (B, T).
    confidence: (B, T) probability of presence q(z_pres = 1) at each used step (0 past the stop).
    shape_prob, color_prob: (B, T) probability of the chosen class.
    steps: (B,) int64 steps run for each image (count + 1, or N when all slots are full).
    pres_logit: (B, T), shape_logits: (B, T, S), color_logits: (B, T, K): the raw outputs at
    each used step (0 past the stop), before any temperature.
    """

    objects: Latents
    confidence: torch.Tensor
    shape_prob: torch.Tensor
    color_prob: torch.Tensor
    steps: torch.Tensor
    pres_logit: torch.Tensor
    shape_logits: torch.Tensor
    color_logits: torch.Tensor


@dataclass(frozen=True)
class Temperatures:
    """Divisors of the presence, shape and colour logits that make the reported probabilities
    calibrated (fitted on validation data: ``training.calibrate``); 1 leaves them as trained.
    The decisions (presence above 0.5, the most likely class) do not change."""

    presence: float = 1.0
    shape: float = 1.0
    color: float = 1.0


def to_scene(objects: Latents, world: World) -> SceneBatch:
    """Inferred latents -> a renderable scene batch (z from each shape's resting height)."""
    rest = torch.tensor([s.resting_z for s in world.shapes], device=objects.position.device)
    z = rest[objects.shape]
    present = objects.pres > 0.5
    position = torch.cat([objects.position, z[..., None]], dim=-1)
    return SceneBatch(present, objects.shape, objects.color, position, objects.yaw)


@torch.no_grad()
def infer(model: AIR, images: torch.Tensor, world: World | None = None, view: ViewInput | None = None,
          temperature: Temperatures = Temperatures()) -> Inference:
    """Greedy inference on images (B, 3, S, S) float in [0, 1], S = the model's image size.
    ``world`` is needed for DAIR (residual renders) and for a view_inputs network, which also
    needs ``view`` (``inference.views``; ``images`` is then its pixels): its answers are lifted
    to the table. The caller sets the model's mode (``model.eval()``: weights from
    ``inference.checkpoint.load_weights`` come in it). ``temperature``: the reported
    probabilities' calibration."""
    if model.config.dair and world is None:
        raise ValueError("a DAIR model needs the world to render residuals")
    if model.config.view_inputs and (view is None or world is None):
        raise ValueError("a view_inputs model needs the world and the view input (inference.views)")
    b, t_max = images.shape[0], model.config.max_steps
    if model.config.view_inputs:
        features = model.encode(images, view.coverage, view.features)
        ctx = model.context(features, images, camera=view.features)
    elif model.config.dair:
        features = model.encode(images)
        ctx = dair_context(model, features, images, world)
    else:
        features = model.encode(images)
        ctx = model.context(features, images)
    state = model.initial_state(ctx)
    alive = torch.ones(b, dtype=torch.bool, device=images.device)
    steps = torch.zeros(b, dtype=torch.int64, device=images.device)
    found: list[Latents] = []
    used, pres_logit, shape_logits, color_logits = [], [], [], []
    for t in range(t_max):
        if not alive.any():
            break
        steps += alive.long()
        state, out = model.step(t, state, ctx)
        lat = model.decide(out, alive)
        found.append(lat)
        used.append(alive.float())
        pres_logit.append(out.pres_logit * alive)
        shape_logits.append(out.shape_logits * alive[:, None])
        color_logits.append(out.color_logits * alive[:, None])
        alive = alive & (lat.pres[:, 0] > 0.5)
        state = state._replace(prev=model.embed(lat, 0))
        if model.config.dair and t + 1 < t_max:
            ctx = dair_context(model, features, images, world, found)
    objects = pad_slots(Latents(*(torch.cat(x, 1) for x in zip(*found))), t_max)
    if model.config.view_inputs:  # view coordinates -> the table
        position, yaw = to_table(objects.position, objects.yaw, objects.shape, view.view, world)
        objects = objects._replace(position=position[..., :2] * objects.pres[..., None], yaw=yaw * objects.pres)
    pad = lambda xs: torch.nn.functional.pad(torch.stack(xs, 1), (0, t_max - len(xs)))  # noqa: E731
    pad3 = lambda xs: torch.nn.functional.pad(torch.stack(xs, 1), (0, 0, 0, t_max - len(xs)))  # noqa: E731
    logits = pad(pres_logit), pad3(shape_logits), pad3(color_logits)
    conf = torch.sigmoid(logits[0] / temperature.presence) * pad(used)
    sprob = torch.softmax(logits[1] / temperature.shape, -1).amax(-1) * objects.pres
    cprob = torch.softmax(logits[2] / temperature.color, -1).amax(-1) * objects.pres
    return Inference(objects, conf, sprob, cprob, steps, *logits)


def pad_slots(lat: Latents, t_max: int) -> Latents:
    """Pad a (B, t) latent sequence with absent slots to (B, t_max)."""
    t = lat.pres.shape[1]
    if t == t_max:
        return lat
    extra = t_max - t
    return Latents(
        torch.nn.functional.pad(lat.pres, (0, extra)),
        torch.nn.functional.pad(lat.shape, (0, extra)),
        torch.nn.functional.pad(lat.color, (0, extra)),
        torch.nn.functional.pad(lat.position, (0, 0, 0, extra)),
        torch.nn.functional.pad(lat.yaw, (0, extra)),
    )


def dair_context(model: AIR, features: torch.Tensor, images: torch.Tensor, world: World,
                 found: list[Latents] | None = None) -> Context:
    """A DAIR network's context for its next step: the image features beside those of the
    residual, the image minus a hard rendering of the steps' latents ``found`` so far (each
    (B, 1)); before any step, minus the empty table. No gradients flow through the rendering."""
    with torch.no_grad():
        if found:
            so_far = pad_slots(Latents(*(torch.cat(x, 1) for x in zip(*found))), model.config.max_steps)
            background = render(to_scene(so_far, world), world).permute(0, 3, 1, 2)
        else:
            background = table_image(world, images.shape[0], images)
    residual = images - background
    return model.context(features, residual, model.residual_encoder(residual))


def table_image(world: World | None, b: int, like: torch.Tensor) -> torch.Tensor:
    """The empty-table image (B, 3, S, S): DAIR's residual before any object is found."""
    from renderer.scene import empty_scenes

    s = like.shape[-1]
    img = render(empty_scenes(1, world.max_objects, like.device), world, "hard", s, s)
    return img.permute(0, 3, 1, 2).expand(b, -1, -1, -1)
