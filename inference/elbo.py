"""The AIR ELBO for the view network, with the learned-appearance renderer inside the loss.

    ELBO(x) = E_q[ log p_theta(x | z) + log p(z, n) - log q_phi(z, n | x) ]

q (the shipped view network, phi) samples one object per step until its first z_pres = 0, in
the canonical view (``inference.views``). p_theta draws the sample with ``renderer.learned
.LearnedLook`` (theta) in the same view and scores the view's pixels under a Gaussian of the
learned noise level, only where the real camera saw (``coverage``), at ``size`` pixels a side.

Gradients (as the AIR paper, and ``training/elbo.py`` for the reduced world):

- position and yaw are reparameterised and flow through the soft renderer;
- presence, shape and colour get a score-function gradient whose learning signal is centred by
  a running mean and an input-dependent baseline b(x) and scaled by a running spread (NVIL,
  Mnih & Gregor 2014; ``NVIL``);
- theta gets the likelihood's gradient directly.

The prior: z_pres ~ Bernoulli(rho) per step while running (AIR's geometric count prior: each
object pays log(1 / rho) in likelihood); shape and colour uniform; the position uniform on the
placement square (``renderer.prior.object_log_density``, at the view position lifted to the
table; the lift's Jacobian, nearly constant over one view, is left out); yaw uniform.
q's yaw is a normal on k * yaw (k the shape's symmetry order), the large-kappa form of the
network's von Mises, so that it can be reparameterised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Normal
from torch.nn import functional as F

from inference.distributions import Latents, where_mean_for
from inference.infer import pad_slots, to_scene
from inference.network import AIR
from inference.views import ViewInput, to_table
from renderer.learned import LearnedLook
from renderer.prior import object_log_density
from renderer.scene import SceneBatch
from renderer.world import World


class Baseline(nn.Module):
    """NVIL's input-dependent baseline b(x): a small CNN, (B, C, S, S) -> (B,)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)[:, 0]


class NVIL:
    """The score-function part of the loss with NVIL's variance reduction: the learning signal
    ``elbo - c - b(x)``, c a running mean of the ELBO, divided by a running std of the signal."""

    def __init__(self, decay: float = 0.9) -> None:
        self.decay, self.mean, self.var = decay, 0.0, 1.0

    def state(self) -> dict:
        return {"mean": self.mean, "var": self.var}

    def load_state(self, state: dict) -> None:
        self.mean, self.var = float(state["mean"]), float(state["var"])

    def surrogate(self, elbo: torch.Tensor, log_q_discrete: torch.Tensor,
                  base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score-function surrogate to minimise, the baseline's own loss), both scalars.
        elbo, log_q_discrete, base: (B,); ``elbo`` is detached here."""
        detached = elbo.detach()
        centred = detached - self.mean
        self.mean = self.decay * self.mean + (1 - self.decay) * float(detached.mean())
        signal = centred - base.detach()
        if signal.numel() > 1:
            self.var = self.decay * self.var + (1 - self.decay) * float(signal.var())
        scale = max(1.0, math.sqrt(self.var))
        return -((signal / scale) * log_q_discrete).mean(), ((centred - base) ** 2).mean() / scale**2


@dataclass(frozen=True)
class Sample:
    """One draw from q for B images: ``objects`` (B, N) in view coordinates; log q of the
    discrete and of the continuous draws, and log p(z, n), each (B,); q's log-probabilities of
    every shape at every step (B, N, S), and q's mean place (B, N, S, 2) and yaw (B, N, S) for
    each shape at every step (``best_shapes``, ``self_label_loss``)."""

    objects: Latents
    log_q_discrete: torch.Tensor
    log_q_continuous: torch.Tensor
    log_prior: torch.Tensor
    shape_log_q: torch.Tensor
    shape_xy: torch.Tensor
    shape_yaw: torch.Tensor


class ObjectDraw(NamedTuple):
    """One step's object drawn from q (B each): the shape and colour distributions and draws;
    the position (reparameterised); whether the shape's yaw is observable, the yaw (reparameterised,
    0 where it is not); and log q of the position and yaw draws."""

    q_shape: Categorical
    q_color: Categorical
    shape: torch.Tensor
    color: torch.Tensor
    xy: torch.Tensor
    has_yaw: torch.Tensor
    yaw: torch.Tensor
    log_q_pose: torch.Tensor


def draw_object(model: AIR, out) -> ObjectDraw:
    """Draw one step's shape, colour, position and yaw from q's step output ``out`` (in that
    order). q's yaw is a normal on k * yaw (k the shape's symmetry order), the large-kappa form
    of the network's von Mises, so that it can be reparameterised."""
    q_shape, q_color = Categorical(logits=out.shape_logits), Categorical(logits=out.color_logits)
    shape, color = q_shape.sample(), q_color.sample()
    q_xy = Normal(where_mean_for(out, shape), out.where_log_std.exp())
    xy = q_xy.rsample()
    k = model.yaw.order[shape]
    has_yaw = (k > 0).float()
    q_phi = Normal(model.yaw.pick(out.yaw_mu, shape), (-0.5 * model.yaw.pick(out.yaw_log_kappa, shape)).exp())
    phi = q_phi.rsample()
    yaw = phi / k.clamp_min(1).float() * has_yaw
    return ObjectDraw(q_shape, q_color, shape, color, xy, has_yaw, yaw,
                      q_xy.log_prob(xy).sum(-1) + has_yaw * q_phi.log_prob(phi))


def mean_pose_by_shape(model: AIR, out) -> tuple[torch.Tensor, torch.Tensor]:
    """q's mean place (B, S, 2) and yaw (B, S) of one step's object for each shape it could be
    (0 yaw where the shape's yaw is not observable)."""
    b, shapes = out.shape_logits.shape
    xy, yaw = [], []
    for k in range(shapes):
        shape = out.shape_logits.new_full((b,), k, dtype=torch.long)
        order = model.yaw.order[shape]
        xy.append(where_mean_for(out, shape))
        yaw.append(model.yaw.pick(out.yaw_mu, shape) / order.clamp_min(1).float() * (order > 0).float())
    return torch.stack(xy, 1), torch.stack(yaw, 1)


def sample_q(model: AIR, v: ViewInput, world: World, rho: float) -> Sample:
    """Draw (z, n) ~ q(. | x) step by step for the view inputs ``v``; score the draw under q and
    the prior (``rho``: p(z_pres = 1) per step while running)."""
    b, n = v.pixels.shape[0], model.config.max_steps
    ctx = model.context(model.encode(v.pixels, v.coverage, v.features), v.pixels, camera=v.features)
    state = model.initial_state(ctx)
    alive = v.pixels.new_ones(b)
    lq_d, lq_c, lp = v.pixels.new_zeros(b), v.pixels.new_zeros(b), v.pixels.new_zeros(b)
    steps: list[Latents] = []
    shape_log_q: list[torch.Tensor] = []
    shape_poses: list[tuple[torch.Tensor, torch.Tensor]] = []
    for t in range(n):
        state, out = model.step(t, state, ctx)
        q_pres = Bernoulli(logits=out.pres_logit)
        pres = q_pres.sample() * alive
        d = draw_object(model, out)
        lq_d = lq_d + alive * q_pres.log_prob(pres) + pres * (d.q_shape.log_prob(d.shape) + d.q_color.log_prob(d.color))
        lq_c = lq_c + pres * d.log_q_pose
        table_xy, _ = to_table(d.xy[:, None], d.yaw[:, None], d.shape[:, None], v.view, world)
        lp = lp + alive * (pres * math.log(rho) + (1 - pres) * math.log1p(-rho))
        lp = lp + pres * object_log_density(table_xy[:, 0, :2], d.has_yaw, world)
        lat = Latents(pres[:, None], d.shape[:, None], d.color[:, None], d.xy[:, None], d.yaw[:, None])
        steps.append(lat)
        shape_log_q.append(d.q_shape.logits)  # normalised log-probabilities
        shape_poses.append(tuple(x.detach() for x in mean_pose_by_shape(model, out)))
        state = state._replace(prev=model.embed(lat, 0))
        alive = alive * pres
    objects = pad_slots(Latents(*(torch.cat(x, 1) for x in zip(*steps))), n)
    xy, yaw = (torch.stack(x, 1) for x in zip(*shape_poses))
    return Sample(objects, lq_d, lq_c, lp, torch.stack(shape_log_q, 1), xy, yaw)


def shrink(v: ViewInput, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The view's pixels (B, 3, size, size) and coverage (B, 1, size, size), box-filtered down
    (``size`` divides the view's side)."""
    factor = v.pixels.shape[-1] // size
    if factor * size != v.pixels.shape[-1]:
        raise ValueError(f"likelihood size {size} must divide the view's side {v.pixels.shape[-1]}")
    return F.avg_pool2d(v.pixels, factor), F.avg_pool2d(v.coverage, factor)


def log_likelihood(objects: Latents, v: ViewInput, world: World, look: LearnedLook, size: int,
                   blur_sigma_px: float = 0.5) -> torch.Tensor:
    """log p_theta(x | z) for view-coordinate ``objects`` (B, N): (B,). Pixels the camera did
    not fully see are left out."""
    position, yaw = to_table(objects.position, objects.yaw, objects.shape, v.view, world)
    scene = to_scene(objects._replace(position=position[..., :2] * objects.pres[..., None],
                                      yaw=yaw * objects.pres), world)
    return scene_log_likelihood(scene, v, look, size, blur_sigma_px)


def scene_log_likelihood(scene: SceneBatch, v: ViewInput, look: LearnedLook, size: int,
                         blur_sigma_px: float = 0.5) -> torch.Tensor:
    """log p_theta(x | scene) for table-frame scenes (B): (B,), as ``log_likelihood``."""
    recon = look.render(scene, v.view.resized(size, size), blur_sigma_px, faces_per_pixel=10).permute(0, 3, 1, 2)
    pixels, cover = shrink(v, size)
    seen = (cover > 0.999).to(pixels)
    return (Normal(recon, look.sigma()).log_prob(pixels) * seen).flatten(1).sum(1)


def elbo_terms(model: AIR, look: LearnedLook, v: ViewInput, world: World, rho: float,
               size: int, q_gradients: bool = True) -> tuple[torch.Tensor, Sample, torch.Tensor]:
    """(ELBO (B,) with gradients for the pathwise part, the sample, log-likelihood (B,)).
    ``q_gradients`` False: q's draw is made without the network's gradients (theta still gets
    the likelihood's)."""
    with torch.set_grad_enabled(q_gradients and torch.is_grad_enabled()):
        sample = sample_q(model, v, world, rho)
    log_lik = log_likelihood(sample.objects, v, world, look, size)
    elbo = log_lik + sample.log_prior - sample.log_q_discrete - sample.log_q_continuous
    return elbo, sample, log_lik


@torch.no_grad()
def best_shapes(sample: Sample, v: ViewInput, world: World, look: LearnedLook, size: int) -> torch.Tensor:
    """For each drawn object (B, N), the shape the likelihood likes best when that object is
    drawn as each shape at q's mean place and yaw for it, the other objects as drawn: (B, N)
    shape indices, the generative model's own answer (meaningless where ``pres`` is 0). One
    render of B x S scenes per present step."""
    objects = sample.objects
    b, n = objects.shape.shape
    shapes = sample.shape_log_q.shape[-1]
    rep = torch.arange(b, device=objects.shape.device).repeat(shapes)  # block k: every image, object j as shape k
    tried = torch.arange(shapes, device=rep.device).repeat_interleave(b)
    best = objects.shape.clone()
    for j in range(n):
        if not bool(objects.pres[:, j].any()):
            break
        shape, position, yaw = objects.shape[rep].clone(), objects.position[rep].clone(), objects.yaw[rep].clone()
        shape[:, j] = tried
        position[:, j] = sample.shape_xy[rep, j, tried]
        yaw[:, j] = sample.shape_yaw[rep, j, tried]
        scored = Latents(objects.pres[rep], shape, objects.color[rep], position, yaw)
        best[:, j] = log_likelihood(scored, v[rep], world, look, size).view(shapes, b).argmax(0)
    return best


def self_label_loss(sample: Sample, best: torch.Tensor) -> torch.Tensor:
    """-log q(k*) summed over each image's present objects, meaned over images: q's shape
    learns the value the likelihood likes best (``best_shapes``), a hard-EM step beside the
    score function, whose push on a value q has all but ruled out is next to nothing. A
    departure from the ELBO's gradient (training/elbo.py has the same for the reduced world)."""
    log_q = sample.shape_log_q.gather(-1, best[..., None])[..., 0]
    return -(sample.objects.pres * log_q).sum(1).mean()
