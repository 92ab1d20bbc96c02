"""The AIR ELBO on unlabelled images, with the renderer inside the loss.

    ELBO(x) = E_q[ log p(x | z) + log p(z, n) - log q(z, n | x) ]

q samples one object per step until its first z_pres = 0. Gradients:

- continuous latents (position, yaw) are reparameterised and flow through the ``soft``
  renderer (PyTorch3D is differentiable, where the paper had to use finite differences);
- discrete latents (z_pres, shape, colour) get a score-function (REINFORCE) gradient whose
  learning signal is centred by an input-dependent learned baseline b(x) and scaled by a running
  estimate of its spread (NVIL, Mnih & Gregor 2014). The baseline reads the image *detached* so
  its loss trains only its own parameters, which get their own, larger learning rate
  (``bl_`` group): it must track the signal faster than the model moves it.

The likelihood is Gaussian per pixel with a fixed scale. The prior: per step t,
z_pres ~ Bernoulli(rho_t) while running, where the truncated-uniform count prior over 0..N is
rho_t = (N - t) / (N - t + 1); early in training rho is annealed from ``pres_prior_start``
(about 1: objects are cheap, so the network does not learn to stop too soon and collapse)
toward that value, or (``pres_prior_end``) toward a small constant, the sparsity prior of the
AIR paper: with the uniform count prior a second object stacked on an explained one costs only
a few nats of KL and the network over-counts; with p(z_pres = 1) = p each object must pay
log(1 / p) in likelihood. Shape and colour
are uniform; (x, y) uniform on the placement square with soft edges; yaw uniform
(``renderer.prior.object_log_density``, beside the prior's sampler).

Presence warm-up (``pres_warmup_iters``): the first thing an untrained q does is propose
objects in random places, which the likelihood punishes, and the score-function gradient then
switches presence off everywhere within ~50 iterations; with no object left there is no signal
for where/what, and it never recovers (z_pres collapse; model card). So for the first iterations every step is forced present and presence is not
trained: position, shape and colour learn to explain the image first; then presence learns
which proposals are worth their prior cost.

For yaw, q here is a normal on k * yaw (k = the shape's symmetry order) with variance
1 / kappa, the large-kappa form of the network's von Mises, because it can be reparameterised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch.nn import functional as F
from torch.distributions import Bernoulli, Normal

from inference.distributions import Latents
from inference.elbo import NVIL, Baseline, draw_object
from inference.infer import pad_slots, to_scene
from inference.network import AIR
from renderer.prior import object_log_density
from renderer.render import palette_rgb, render
from renderer.world import World
from training.objectives import Objective


@dataclass(frozen=True)
class Sample:
    """One draw from q for B images.

    objects: Latents (B, N). log_q_discrete, log_q_continuous, log_prior: (B,).
    albedo: (B, N, 3) the relaxed (expected) colour of each object, or None when colours were drawn.
    """

    objects: Latents
    log_q_discrete: torch.Tensor
    log_q_continuous: torch.Tensor
    log_prior: torch.Tensor
    albedo: torch.Tensor | None = None


def pres_prior(n: int, t: int, anneal: float, start: float, end: float = 0.0) -> float:
    """p(z_pres_t = 1 | running), annealed: ``anneal`` 0 -> ``start``, 1 -> ``end``, or the
    truncated-uniform count prior if ``end`` is 0."""
    target = (n - t) / (n - t + 1) if end <= 0 else end
    return (1 - anneal) * start + anneal * target


def sample_q(model: AIR, images: torch.Tensor, world: World, anneal: float, start: float,
             force_present: bool = False, relax_color: bool = False, end: float = 0.0) -> Sample:
    """Draw (z, n) ~ q(. | x) step by step; score each draw under q and the prior.
    force_present: every step present and presence left out of both q and the prior.
    relax_color: instead of drawing a colour, each object is rendered in the q-weighted mean of
    the palette (differentiable), and log q(colour) is replaced by its expectation (minus the
    entropy, also differentiable). Early in training this lets a proposal that overlaps an object
    take on its colour by gradient; with drawn colours a wrong-coloured proposal is pushed *off*
    the object it overlaps (red over green costs more than red and green apart)."""
    b, n = images.shape[0], model.config.max_steps
    ctx = model.context(model.encode(images), images)
    state = model.initial_state(ctx)
    alive = torch.ones(b, device=images.device)
    lq_d = images.new_zeros(b)
    lq_c = images.new_zeros(b)
    lp = images.new_zeros(b)
    steps: list[Latents] = []
    albedos: list[torch.Tensor] = []
    palette = palette_rgb(world, images.device, images.dtype)
    for t in range(n):
        state, out = model.step(t, state, ctx)
        q_pres = Bernoulli(logits=out.pres_logit)
        pres = torch.ones_like(alive) if force_present else q_pres.sample() * alive
        d = draw_object(model, out)
        if not force_present:
            lq_d = lq_d + alive * q_pres.log_prob(pres)
        lq_d = lq_d + pres * d.q_shape.log_prob(d.shape)
        lq_c = lq_c + pres * d.log_q_pose
        if relax_color:
            probs = d.q_color.probs
            albedos.append(probs @ palette)
            lq_c = lq_c + pres * (probs * d.q_color.logits).sum(-1)  # E_q[log q(colour)]
        else:
            lq_d = lq_d + pres * d.q_color.log_prob(d.color)
        rho = pres_prior(n, t, anneal, start, end)
        if not force_present:
            lp = lp + alive * (pres * math.log(rho) + (1 - pres) * math.log1p(-rho))
        lp = lp + pres * object_log_density(d.xy, d.has_yaw, world)
        lat = Latents(pres[:, None], d.shape[:, None], d.color[:, None], d.xy[:, None], d.yaw[:, None])
        steps.append(lat)
        state = state._replace(prev=model.embed(lat, 0))
        alive = alive * pres
    objects = pad_slots(Latents(*(torch.cat(x, 1) for x in zip(*steps))), n)
    albedo = torch.stack(albedos, 1) if relax_color else None
    return Sample(objects, lq_d, lq_c, lp, albedo)


def gaussian_blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """(B, C, S, S) blurred by a separable Gaussian of ``sigma_px`` (edges replicated); as is for 0."""
    if sigma_px <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma_px))
    r = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (r / sigma_px) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def log_likelihood(objects: Latents, images: torch.Tensor, world: World, scale: float,
                   blur_sigma_px: float = 0.5, image_blur_px: float = 0.0,
                   albedo: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x | z): Gaussian pixels around the soft rendering. images (B, 3, S, S) -> (B,).
    A wider edge blur (``blur_sigma_px``) reaches objects further away (longer-range position
    gradients). ``image_blur_px`` compares image and rendering both blurred by a Gaussian: a
    coarse view in which a proposal a few pixels off still overlaps its object. ``albedo``
    (B, N, 3): relaxed object colours (``sample_q(relax_color=True)``)."""
    s = images.shape[-1]
    scene = replace(to_scene(objects, world), albedo=albedo)
    recon = render(scene, world, "soft", s, s, blur_sigma_px=blur_sigma_px).permute(0, 3, 1, 2)
    recon, images = gaussian_blur(recon, image_blur_px), gaussian_blur(images, image_blur_px)
    return Normal(recon, scale).log_prob(images).flatten(1).sum(1)


class ELBO(Objective):
    """The ELBO objective: reparameterised + NVIL score-function gradients in one surrogate loss.
    ``cfg``: an ``experiments.config.ResearchConfig`` (its ELBO knobs and lr)."""

    def __init__(self, model: AIR, world: World, cfg) -> None:
        super().__init__(model, world)
        self.cfg = cfg
        self.baseline = Baseline()
        self.nvil = NVIL()

    def param_groups(self) -> list[dict]:
        """The model's group, and the baseline's (``bl_``) at its own, larger learning rate."""
        cfg = self.cfg
        return [{"params": list(self.model.parameters()), "lr": cfg.lr, "lr_scale": 1.0},
                {"params": list(self.baseline.parameters()), "lr": cfg.baseline_lr,
                 "lr_scale": cfg.baseline_lr / cfg.lr, "name": "bl_"}]

    def state(self) -> dict:
        return {"baseline": self.baseline.state_dict()}

    def load_state(self, state: dict) -> None:
        if "baseline" in state:
            self.baseline.load_state_dict(state["baseline"])

    def loss(self, images: torch.Tensor, scene, index, it: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The surrogate loss of one step on unlabelled ``images`` (``scene`` is not read)."""
        cfg = self.cfg
        warm = it < cfg.pres_warmup_iters
        anneal = min(1.0, max(0, it - cfg.pres_warmup_iters) / max(1, cfg.pres_anneal_iters))
        if cfg.elbo_samples > 1:
            images = images.repeat(cfg.elbo_samples, 1, 1, 1)
        sample = sample_q(self.model, images, self.world, anneal, cfg.pres_prior_start, force_present=warm,
                          relax_color=it < cfg.elbo_relax_color_iters, end=cfg.pres_prior_end)
        image_blur = cfg.elbo_image_blur_px * max(0.0, 1 - it / max(1, cfg.elbo_image_blur_iters))
        log_lik = log_likelihood(sample.objects, images, self.world, cfg.likelihood_scale, cfg.elbo_blur_px,
                                 image_blur, sample.albedo)
        elbo = log_lik + sample.log_prior - sample.log_q_discrete - sample.log_q_continuous
        detached = elbo.detach()

        # NVIL: the learning signal elbo - c - b(x), with c a running mean of the ELBO and b(x)
        # the input-dependent baseline (reading the image detached), scaled by a running std.
        base = self.baseline(images.detach())
        surrogate, baseline_loss = self.nvil.surrogate(elbo, sample.log_q_discrete, base)
        reparam = -elbo.mean()  # pathwise part (discrete draws are constants here)
        n, per_pixel = images.shape[0], images[0].numel()
        stats = {
            "loss": float(-detached.mean()) / per_pixel,
            "elbo": float(detached.mean()),
            "log_lik": float(log_lik.detach().mean()),
            "kl": float((sample.log_q_discrete + sample.log_q_continuous - sample.log_prior).detach().mean()),
            "count": float(sample.objects.pres.sum() / n),
            "baseline_mse": float(baseline_loss.detach()),  # scaled by the signal's running variance
        }
        return reparam + surrogate + baseline_loss, stats
