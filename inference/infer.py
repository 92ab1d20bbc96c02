"""Greedy amortised inference: images -> objects in one forward pass.

Steps run batched; an image stops at its first z_pres = 0 (it is masked from then on, and the
loop ends as soon as every image has stopped), so simple scenes cost fewer steps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
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
    features: (B, C, S/4, S/4) the encoder's map of each image, which the out-of-set detector
    reads (``inference.foreign``); mirror_features: the same of each image's mirror image, where
    ``mirror`` was asked (None otherwise).
    """

    objects: Latents
    confidence: torch.Tensor
    shape_prob: torch.Tensor
    color_prob: torch.Tensor
    steps: torch.Tensor
    pres_logit: torch.Tensor
    shape_logits: torch.Tensor
    color_logits: torch.Tensor
    features: torch.Tensor | None = None
    mirror_features: torch.Tensor | None = None


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


MIRROR_MATCH = 0.15  # largest distance (normalised view units, about 7 cm) between an object and its mirror's


class Greedy(NamedTuple):
    """The greedy pass's raw result for B images, T slots: ``objects`` as the network states them
    (a view network's centres still in view coordinates), ``used`` (B, T) 1 at each step run,
    ``steps`` (B,), the logits and the encoder's map as in ``Inference``."""

    objects: Latents
    used: torch.Tensor
    steps: torch.Tensor
    pres_logit: torch.Tensor
    shape_logits: torch.Tensor
    color_logits: torch.Tensor
    features: torch.Tensor | None = None


@torch.no_grad()
def infer(model: AIR, images: torch.Tensor, world: World | None = None, view: ViewInput | None = None,
          temperature: Temperatures = Temperatures(), mirror: bool = False) -> Inference:
    """Greedy inference on images (B, 3, S, S) float in [0, 1], S = the model's image size.
    ``world`` is needed for DAIR (residual renders) and for a view_inputs network, which also
    needs ``view`` (``inference.views``; ``images`` is then its pixels): its answers are lifted
    to the table. The caller sets the model's mode (``model.eval()``: weights from
    ``inference.checkpoint.load_weights`` come in it). ``temperature``: the reported
    probabilities' calibration. ``mirror`` (view networks): also read each view mirrored left to
    right and average the shape and colour logits and the centres of the objects the two
    readings share (``mirror_average``)."""
    if model.config.dair and world is None:
        raise ValueError("a DAIR model needs the world to render residuals")
    if model.config.view_inputs and (view is None or world is None):
        raise ValueError("a view_inputs model needs the world and the view input (inference.views)")
    if mirror and not model.config.view_inputs:
        raise ValueError("mirror averaging needs a view network (its views are level and centred)")
    b = images.shape[0]
    mirror_features = None
    if mirror:
        both = mirrored(view)
        whole = greedy(model, both.pixels, world, both)
        g, mirror_features = mirror_average(whole, b), whole.features[b:]
    else:
        g = greedy(model, images, world, view)
    objects = g.objects
    if model.config.view_inputs:  # view coordinates -> the table
        position, yaw = to_table(objects.position, objects.yaw, objects.shape, view.view, world)
        objects = objects._replace(position=position[..., :2] * objects.pres[..., None], yaw=yaw * objects.pres)
    conf = torch.sigmoid(g.pres_logit / temperature.presence) * g.used
    sprob = torch.softmax(g.shape_logits / temperature.shape, -1).amax(-1) * objects.pres
    cprob = torch.softmax(g.color_logits / temperature.color, -1).amax(-1) * objects.pres
    return Inference(objects, conf, sprob, cprob, g.steps, g.pres_logit, g.shape_logits, g.color_logits,
                     g.features, mirror_features)


def greedy(model: AIR, images: torch.Tensor, world: World | None, view: ViewInput | None) -> Greedy:
    """The network's steps over a batch (``infer``'s arguments), each image stopping at its first
    absent object; T = the model's N slots, padded."""
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
    pad = lambda xs: torch.nn.functional.pad(torch.stack(xs, 1), (0, t_max - len(xs)))  # noqa: E731
    pad3 = lambda xs: torch.nn.functional.pad(torch.stack(xs, 1), (0, 0, 0, t_max - len(xs)))  # noqa: E731
    return Greedy(objects, pad(used), steps, pad(pres_logit), pad3(shape_logits), pad3(color_logits), features)


def mirrored(view: ViewInput) -> ViewInput:
    """B views -> 2B: the views, then each mirrored left to right. A canonical view is level and
    looks at the table centre, so its mirror is the view of the scene reflected in the vertical
    plane through the camera and the table centre: a scene of the same world, whose objects
    stand at mirrored view coordinates (u -> -u) with the same shapes and colours."""
    b = view.shape[0]
    twice = torch.cat([torch.arange(b), torch.arange(b)]).to(view.pixels.device)
    return ViewInput(torch.cat([view.pixels, view.pixels.flip(-1)]),
                     torch.cat([view.coverage, view.coverage.flip(-1)]),
                     torch.cat([view.features, view.features]), view.view.select(twice))


@lru_cache(maxsize=8)
def slot_permutations(t: int, device: torch.device) -> torch.Tensor:
    """(T!, T) every order of T slots; kept per T and device (read only)."""
    return torch.tensor(list(itertools.permutations(range(t))), device=device)


def mirror_average(g: Greedy, b: int) -> Greedy:
    """The first ``b`` images' readings (``greedy`` over ``mirrored`` views), each object's shape
    and colour logits and its view centre averaged with its counterpart's in the mirrored
    reading (mirrored back), and the shape and colour re-decided from them. Counterparts: the
    pairing of the present objects with the least squared distance, where both readings found
    the same count; a pair further apart than ``MIRROR_MATCH`` keeps its own. Count, presence
    and yaw stay the first reading's."""
    a, m = _rows(g, slice(0, b)), _rows(g, slice(b, None))
    t = a.pres_logit.shape[1]
    perms = slot_permutations(t, a.used.device)  # (P, T)
    pa, pm = a.objects.pres > 0.5, (m.objects.pres > 0.5)[:, perms]  # (B, T), (B, P, T)
    flip = torch.tensor([-1.0, 1.0], dtype=a.objects.position.dtype, device=a.used.device)
    d2 = ((a.objects.position[:, None] - (m.objects.position * flip)[:, perms]) ** 2).sum(-1)  # (B, P, T)
    cost = (d2 * pa[:, None]).sum(-1).masked_fill(~(pa[:, None] == pm).all(-1), math.inf)
    best = cost.argmin(1)
    perm = perms[best]  # (B, T): slot t of the first reading <-> slot perm[t] of the mirrored one
    close = d2.gather(1, best[:, None, None].expand(-1, 1, t))[:, 0] <= MIRROR_MATCH ** 2
    pair = pa & close & torch.isfinite(cost.gather(1, best[:, None]))

    def mean(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        other = other.gather(1, perm[..., None].expand_as(other))
        return torch.where(pair[..., None], (own + other) / 2, own)
    shape_logits, color_logits = mean(a.shape_logits, m.shape_logits), mean(a.color_logits, m.color_logits)
    objects = a.objects._replace(shape=torch.where(pair, shape_logits.argmax(-1), a.objects.shape),
                                 color=torch.where(pair, color_logits.argmax(-1), a.objects.color),
                                 position=mean(a.objects.position, m.objects.position * flip))
    return a._replace(objects=objects, shape_logits=shape_logits, color_logits=color_logits)


def _rows(g: Greedy, index: slice) -> Greedy:
    return Greedy(Latents(*(x[index] for x in g.objects)), *(None if x is None else x[index] for x in g[1:]))


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
