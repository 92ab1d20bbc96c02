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
from torch.distributions import Bernoulli, Categorical, Normal

from inference.distributions import Latents
from inference.elbo import NVIL, Baseline, draw_object
from inference.infer import dair_context, pad_slots, to_scene
from inference.network import AIR
from renderer.prior import object_log_density
from renderer.render import SOFT_FACES_PER_PIXEL, palette_rgb, render
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


def _walk(model: AIR, images: torch.Tensor, presence, world: World | None = None):
    """Run q's steps on ``images``, yielding (t, step output, object draw, its latents) per step;
    ``presence(t, out)`` (B,) decides each step's z_pres before its object is drawn. The next
    step is conditioned on what the caller gets: this step's latents with that presence. A DAIR
    network (``world`` needed) also reads the image minus a rendering of the objects so far."""
    n = model.config.max_steps
    features = model.encode(images)
    ctx = dair_context(model, features, images, world) if model.config.dair else model.context(features, images)
    state = model.initial_state(ctx)
    found: list[Latents] = []
    for t in range(n):
        state, out = model.step(t, state, ctx)
        pres = presence(t, out)
        d = draw_object(model, out)
        lat = Latents(pres[:, None], d.shape[:, None], d.color[:, None], d.xy[:, None], d.yaw[:, None])
        yield t, out, d, lat
        state = state._replace(prev=model.embed(lat, 0))
        found.append(lat)
        if model.config.dair and t + 1 < n:
            ctx = dair_context(model, features, images, world, found)


def _stack(steps: list[Latents], n: int) -> Latents:
    return pad_slots(Latents(*(torch.cat(x, 1) for x in zip(*steps))), n)


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
    alive = torch.ones(b, device=images.device)
    lq_d = images.new_zeros(b)
    lq_c = images.new_zeros(b)
    lp = images.new_zeros(b)
    steps: list[Latents] = []
    albedos: list[torch.Tensor] = []
    palette = palette_rgb(world, images.device, images.dtype)

    def presence(t: int, out) -> torch.Tensor:
        return torch.ones_like(alive) if force_present else Bernoulli(logits=out.pres_logit).sample() * alive

    for t, out, d, lat in _walk(model, images, presence, world):
        pres = lat.pres[:, 0]
        if not force_present:
            lq_d = lq_d + alive * Bernoulli(logits=out.pres_logit).log_prob(pres)
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
        steps.append(lat)
        alive = alive * pres
    albedo = torch.stack(albedos, 1) if relax_color else None
    return Sample(_stack(steps, n), lq_d, lq_c, lp, albedo)


@dataclass(frozen=True)
class Steps:
    """Every one of q's N steps drawn as if present, for B images: what the enumerated
    estimator needs (``enumerated_elbo``). Step t's draw is the one q makes when steps < t are
    present, so the first c steps are exactly q's draw given the count c.

    objects: Latents (B, N), pres all ones. pres_logit, log_q_pose, log_prior_pose: (B, N).
    q_shape, q_color: per step, Categorical over (B,). albedo: (B, N, 3) q-mean colours, or None
    when colours are drawn. where_shift: (B, N, S, 2) each shape's mean-position shift
    (``AIRConfig.shape_positions``), or None."""

    objects: Latents
    pres_logit: torch.Tensor
    log_q_pose: torch.Tensor
    log_prior_pose: torch.Tensor
    q_shape: list
    q_color: list
    albedo: torch.Tensor | None = None
    where_shift: torch.Tensor | None = None


def sample_steps(model: AIR, images: torch.Tensor, world: World, relax_color: bool = False) -> Steps:
    """Draw all N steps of q as if present (``Steps``)."""
    n = model.config.max_steps
    palette = palette_rgb(world, images.device, images.dtype)
    steps, logits, lq, lp, q_shape, q_color, shifts = [], [], [], [], [], [], []
    ones = images.new_ones(images.shape[0])
    for _t, out, d, lat in _walk(model, images, lambda t, out: ones, world):
        steps.append(lat)
        shifts.append(out.where_shift)
        logits.append(out.pres_logit)
        lq.append(d.log_q_pose)
        lp.append(object_log_density(d.xy, d.has_yaw, world))
        q_shape.append(d.q_shape)
        q_color.append(d.q_color)
    albedo = torch.stack([q.probs @ palette for q in q_color], 1) if relax_color else None
    shift = None if not model.config.shape_positions else torch.stack(shifts, 1)
    return Steps(_stack(steps, n), torch.stack(logits, 1), torch.stack(lq, 1), torch.stack(lp, 1),
                 q_shape, q_color, albedo, shift)


def count_log_probs(pres_logit: torch.Tensor, rho: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log q(n = c), log p(n = c)) for c = 0..N, each (B, N + 1): AIR's stopping process, step t
    present with q's sigmoid(pres_logit[:, t]) or the prior's rho[t] while running."""
    def counts(on: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        ran = F.pad(torch.cumsum(on, 1), (1, 0))  # sum of log p(present) over the first c steps
        return ran + F.pad(off, (0, 1))  # ... then the first absent step (none after N)

    lq = counts(F.logsigmoid(pres_logit), F.logsigmoid(-pres_logit))
    r = pres_logit.new_tensor(rho).expand_as(pres_logit)
    return lq, counts(r.log(), torch.log1p(-r))


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
                   albedo: torch.Tensor | None = None,
                   faces_per_pixel: int = SOFT_FACES_PER_PIXEL) -> torch.Tensor:
    """log p(x | z): Gaussian pixels around the soft rendering. images (B, 3, S, S) -> (B,).
    A wider edge blur (``blur_sigma_px``) reaches objects further away (longer-range position
    gradients). ``image_blur_px`` compares image and rendering both blurred by a Gaussian: a
    coarse view in which a proposal a few pixels off still overlaps its object. ``albedo``
    (B, N, 3): relaxed object colours (``sample_q(relax_color=True)``)."""
    s = images.shape[-1]
    scene = replace(to_scene(objects, world), albedo=albedo)
    recon = render(scene, world, "soft", s, s, blur_sigma_px=blur_sigma_px,
                   faces_per_pixel=faces_per_pixel).permute(0, 3, 1, 2)
    recon, images = gaussian_blur(recon, image_blur_px), gaussian_blur(images, image_blur_px)
    return Normal(recon, scale).log_prob(images).flatten(1).sum(1)


def _expected_log_ratio(q: Categorical) -> torch.Tensor:
    """E_q[log p(k) - log q(k)] for a uniform prior p over q's K values: (B,), differentiable."""
    return -(q.probs * q.logits).sum(-1) - math.log(q.logits.shape[-1])


def enumerated_elbo(steps: Steps, images: torch.Tensor, rho: list[float], likelihood,
                    warm: str = "", local_scale: float = 1.0, draw_at_least_one: bool = False,
                    explore: float = 0.0, fit_places: bool = False, profile: torch.Tensor | None = None,
                    self_label: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The ELBO with the count summed out exactly and local expectations for shape and colour.

    ``likelihood(objects, images, albedo)`` -> (B,) is log p(x | z). Returns (objective (B,) to
    maximise, with gradients; the ELBO's value (B,), detached; diagnostics).

    - The count: q's first c steps are its draw given n = c (``Steps``), so
      E_q[...] = sum_c q(c | z) [log p(x | z_1..c) + log p(c) - log q(c | z) + the first c
      objects' terms]: N + 1 renders without gradients, and the presence logits get the exact
      gradient of that sum (no score function: the count's variance, hundreds of nats between a
      missed and a found object, never reaches the shape's signal of a few nats). Poses are
      reparameterised through one rendering with gradients, at a count c* drawn from q(c): an
      unbiased draw of the sum's pathwise part, at the cost of one backward pass as before.
    - Shape and colour (drawn, uniform priors): their KL terms in expectation under q, and the
      likelihood's dependence by local expectation (Titsias and Lazaro-Gredilla, 2015): at c*,
      for each present step t and each value k the image is rendered with only that object's
      shape (colour) changed, and sum_k q_t(k) log p(x | z, k) is differentiated in q_t. It
      leaves out how step t's value steers the later steps (through their conditioning), a small
      bias the score function would remove at a large cost in variance. Colours rendered as
      q-means (``steps.albedo``) take the pathwise gradient instead. With ``steps.where_shift``
      (a network whose position depends on the shape) each shape is rendered at its own place.
      ``fit_places``: and every shape's place learns where that shape would best explain the
      image, drawn or not (the shape variants' likelihoods, rendered again with gradients into
      their own shifts only: a profile likelihood beside the ELBO, which alone trains a place
      only when q draws its shape; measured: once q(sphere) fell to zero, the sphere's place
      was never learned, and spheres stayed cones placed 3 cm off).
    - ``local_scale`` > 1 divides the centred likelihoods (not the KL terms), a departure from
      the ELBO's gradient with two effects, both measured (model card): the shape's signal in
      the shared layers shrinks (at scale 55, 0.5% of the poses'; unscaled 25-35%), and the KL's
      entropy bonus acts as a temperature ``local_scale`` on q(shape), which stays soft. Early
      in training both help: unscaled, a wrong shape's hundreds of nats fill the clipped
      gradient and the poses never learn (a from-scratch run found nothing in 1400 iterations),
      and q commits to one shape. Once the poses are learned both hurt: q(shape) stayed near
      uniform on spheres and cones while the likelihood at q's own draws named the right shape
      77% of the time. The caller anneals the scale to 1 (``ELBO.local_scale``).
      ``diag["local_spread"]`` is their root mean square, for the caller's running scale.
    - ``profile`` (P, 2): table-plane offsets, metres. Each shape's entry in the local
      expectation is then its best likelihood over its place and that place moved by each
      offset: every shape compared at its best place nearby (a profile likelihood), a departure
      from the ELBO's own entries, which compare all shapes at q's one place and so favour the
      shape whose place q has learned (model card: cones placed 3 cm nearer the camera than the
      spheres they were called).
    - ``self_label`` > 0: each drawn step's q(shape) and q(colour) also learn
      ``self_label * log q(k*)``, k* the value whose rendering the likelihood (profile) likes
      best: a hard-EM step beside the local expectation, whose gradient in q's logits,
      q_k (L_k - E_q L), is weak wherever q has put little mass on the best value. No label is
      read: k* is the generative model's own answer.
    - ``warm``: "all" every step forced present (n = N, presence untrained); "first": n >= 1
      (q(c) renormalised over c >= 1); "": none.
    - ``draw_at_least_one``: c* is drawn from q(c | c >= 1), so the first step's pose, shape and
      colour keep their gradients when q says the table is empty. The count's sum stays exact;
      the pose and what gradients are then those of "if the first object were there", a
      departure from the ELBO's gradient that keeps q from the z_pres collapse (a proposal a few
      centimetres off costs more than an empty table once the edges are sharp: model card).
      ``explore`` > 0: c* is drawn from (1 - explore) q(c | c >= 1) + explore Uniform{1..N}, so
      the later steps learn too when q has switched them off (with c* from q alone, the second
      step of two-object scenes stopped learning and the count never reached two).
    """
    b, n = steps.pres_logit.shape
    order = torch.arange(n, device=images.device)

    def with_count(c: torch.Tensor) -> Latents:  # c: (B,) or scalar
        return steps.objects._replace(pres=(order < torch.as_tensor(c, device=images.device)[..., None])
                                      .to(images.dtype).expand(b, n))

    discrete = [_expected_log_ratio(a) + _expected_log_ratio(c) for a, c in zip(steps.q_shape, steps.q_color)]
    obj = steps.log_prior_pose - steps.log_q_pose + torch.stack(discrete, 1)
    cum_obj = F.pad(torch.cumsum(obj, 1), (1, 0))  # (B, N + 1): the first c objects' terms
    lq, lp = count_log_probs(steps.pres_logit, rho)
    if warm == "all":
        weight = F.one_hot(torch.full((b,), n, device=images.device), n + 1).to(images.dtype)
    else:
        if warm == "first":
            lq = torch.cat([torch.full_like(lq[:, :1], -math.inf),
                            lq[:, 1:] - lq[:, 1:].logsumexp(1, keepdim=True)], 1)
        weight = lq.exp()
    counted = warm != "all"  # the count's own terms are in the objective

    fields = {"shape": steps.q_shape, **({"color": steps.q_color} if steps.albedo is None else {})}
    with torch.no_grad():  # every count, and the local variants at c* ~ q(c), in one render
        drawn_from = weight.detach()
        if draw_at_least_one:
            drawn_from = torch.cat([torch.zeros_like(drawn_from[:, :1]), drawn_from[:, 1:] + 1e-12], 1)
            drawn_from = drawn_from / drawn_from.sum(1, keepdim=True)
            uniform = torch.cat([torch.zeros_like(drawn_from[:, :1]), torch.full_like(drawn_from[:, 1:], 1 / n)], 1)
            drawn_from = (1 - explore) * drawn_from + explore * uniform
        c_star = torch.multinomial(drawn_from, 1)[:, 0]
        at = with_count(c_star)
        scenes = [with_count(c) for c in range(n + 1)]
        pixels = [images] * (n + 1)
        albedos = [steps.albedo] * (n + 1)
        variants = []  # (field, step, images whose step t is present at c*, values drawn, offset)
        placed = []  # fit_places: (shape variant, its step, its images, its shape)
        for name, qs in fields.items():
            for t, q in enumerate(qs):
                sel = (t < c_star).nonzero()[:, 0]
                if not len(sel):
                    continue
                drawn = getattr(at, name)[sel, t]
                moves = [None] if name != "shape" or profile is None else [None, *profile]  # None: q's place
                for j in range(q.logits.shape[-1]):  # every value, the drawn one (j = 0) only moved
                    value = getattr(at, name)[sel].clone()
                    value[:, t] = (drawn + j) % q.logits.shape[-1]
                    variant = Latents(*(x[sel] for x in at))._replace(**{name: value})
                    if name == "shape" and steps.where_shift is not None:  # each shape at its own place
                        shift = steps.where_shift[sel, t].detach()  # (|sel|, S, 2)
                        rows = torch.arange(len(sel), device=images.device)
                        position = variant.position.clone()
                        position[:, t] += shift[rows, value[:, t]] - shift[rows, drawn]
                        variant = variant._replace(position=position)
                        if fit_places and j:
                            placed.append((variant, t, sel, value[:, t]))
                    for move in moves:
                        if j == 0 and move is None:  # the drawn value at q's place: ll_at, rendered below
                            continue
                        moved = variant
                        if move is not None:
                            position = variant.position.clone()
                            position[:, t] += move
                            moved = variant._replace(position=position)
                        scenes.append(moved)
                        pixels.append(images[sel])
                        albedos.append(None if steps.albedo is None else steps.albedo[sel])
                        variants.append((name, t, sel, drawn, j))
        big = Latents(*(torch.cat(x, 0) for x in zip(*scenes)))
        albedo = None if steps.albedo is None else torch.cat(albedos, 0)
        ll_all = likelihood(big, torch.cat(pixels, 0), albedo).split([len(x) for x in pixels])
    ll = torch.stack(ll_all[: n + 1], 1)  # (B, N + 1)
    per_count = ll + cum_obj + (lp - torch.where(weight > 0, lq, torch.zeros_like(lq)) if counted else 0)
    # pathwise: the poses' gradient through the rendering at c* (an unbiased draw of the sum over c)
    ll_star = likelihood(at, images, steps.albedo)
    objective = (weight * per_count).sum(1) + ll_star - ll_star.detach()

    if placed:  # each variant again, its own shift with gradients (the rest detached)
        scenes, rows_all = [], []
        for variant, t, sel, k in placed:
            own = steps.where_shift[sel, t][torch.arange(len(sel), device=images.device), k]  # (|sel|, 2)
            position = variant.position.clone()
            position[:, t] = position[:, t] - own.detach() + own
            scenes.append(variant._replace(position=position))
            rows_all.append(sel)
        rows_all = torch.cat(rows_all)
        big = Latents(*(torch.cat(x, 0) for x in zip(*scenes)))
        albedo = None if steps.albedo is None else steps.albedo.detach()[rows_all]
        ll_placed = likelihood(big, images[rows_all], albedo)
        objective = objective.index_add(0, rows_all, ll_placed - ll_placed.detach())

    ll_at = ll.gather(1, c_star[:, None])[:, 0]  # log p(x | z) at c*, the drawn values
    tables: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for (name, t, sel, drawn, j), values in zip(variants, ll_all[n + 1:]):
        k = fields[name][t].logits.shape[-1]
        if (name, t) not in tables:  # (|sel|, K): log p(x | z) with step t's value set to each k
            table = ll_at.new_full((len(sel), k), -math.inf)
            table[torch.arange(len(sel)), drawn] = ll_at[sel]
            tables[name, t] = sel, table
        entry = (torch.arange(len(sel)), (drawn + j) % k)  # the best over the value's places
        tables[name, t][1][entry] = torch.maximum(tables[name, t][1][entry], values)
    squares, entries = images.new_zeros(()), 0
    for (name, t), (sel, values) in tables.items():
        q = fields[name][t]
        centred = values - values.mean(1, keepdim=True)
        squares, entries = squares + (centred ** 2).sum(), entries + centred.numel()
        objective = objective.index_add(0, sel, (q.probs[sel] * centred).sum(1) / local_scale)
        if self_label > 0:  # a Categorical's logits are already log q
            best = values.argmax(1, keepdim=True)
            objective = objective.index_add(0, sel, self_label * q.logits[sel].gather(1, best)[:, 0])
    diag = {"local_spread": (squares / max(1, entries)).sqrt(),"count": (weight.detach() * torch.arange(n + 1, device=images.device)).sum(1),
            "log_lik": (weight.detach() * ll).sum(1),
            "kl": -(weight * (per_count - ll)).detach().sum(1)}
    return objective, (weight * per_count).detach().sum(1), diag


def offsets_cm(text: str) -> torch.Tensor | None:
    """'dx:dy,dx:dy,...' in cm -> (P, 2) metres; None for an empty text."""
    if not text.strip():
        return None
    try:
        return torch.tensor([[float(v) / 100 for v in item.split(":")] for item in text.split(",")]).view(-1, 2)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"elbo_profile wants 'dx:dy,dx:dy,...' in cm, got {text!r}") from err


class ELBO(Objective):
    """The ELBO objective: reparameterised + NVIL score-function gradients in one surrogate loss.
    ``cfg``: an ``experiments.config.ResearchConfig`` (its ELBO knobs and lr)."""

    def __init__(self, model: AIR, world: World, cfg) -> None:
        super().__init__(model, world)
        self.cfg = cfg
        self.baseline = Baseline()
        self.nvil = NVIL()
        self.local_var = 1.0  # running mean square of the enumerated estimator's local signal
        self.profile = offsets_cm(cfg.elbo_profile)

    def param_groups(self) -> list[dict]:
        """The model's group, and the baseline's (``bl_``) at its own, larger learning rate."""
        cfg = self.cfg
        return [{"params": list(self.model.parameters()), "lr": cfg.lr, "lr_scale": 1.0},
                {"params": list(self.baseline.parameters()), "lr": cfg.baseline_lr,
                 "lr_scale": cfg.baseline_lr / cfg.lr, "name": "bl_"}]

    def state(self) -> dict:
        return {"baseline": self.baseline.state_dict(), "nvil": self.nvil.state(), "local_var": self.local_var}

    def load_state(self, state: dict) -> None:
        if "baseline" in state:
            self.baseline.load_state_dict(state["baseline"])
        if "nvil" in state:
            self.nvil.load_state(state["nvil"])
        self.local_var = float(state.get("local_var", self.local_var))

    def to(self, device: torch.device) -> ELBO:
        super().to(device)
        self.baseline.to(device)
        self.profile = None if self.profile is None else self.profile.to(device)
        return self

    def local_scale(self, it: int) -> float:
        """What ``enumerated_elbo`` divides the local signal by at step ``it``: its running RMS
        (``elbo_local_rms``) until ``elbo_local_rms_iters``, then geometrically down to 1 over
        ``elbo_local_anneal_iters``; 1 without ``elbo_local_rms``."""
        cfg = self.cfg
        if not cfg.elbo_local_rms:
            return 1.0
        rms = max(1.0, math.sqrt(self.local_var))
        if cfg.elbo_local_rms_iters < 0 or it < cfg.elbo_local_rms_iters:
            return rms
        done = min(1.0, (it - cfg.elbo_local_rms_iters) / max(1, cfg.elbo_local_anneal_iters))
        return rms ** (1.0 - done)

    def edge_blur(self, it: int) -> float:
        """The soft renderer's edge blur at step ``it``, px: ``elbo_blur_px``, annealed linearly to
        ``elbo_blur_end_px`` (when that is >= 0) over ``elbo_blur_anneal_iters``."""
        cfg = self.cfg
        if cfg.elbo_blur_end_px < 0:
            return cfg.elbo_blur_px
        done = min(1.0, it / max(1, cfg.elbo_blur_anneal_iters))
        return cfg.elbo_blur_px + done * (cfg.elbo_blur_end_px - cfg.elbo_blur_px)

    def loss(self, images: torch.Tensor, scene, index, it: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The surrogate loss of one step on unlabelled ``images`` (``scene`` is not read)."""
        cfg = self.cfg
        warm = it < cfg.pres_warmup_iters
        anneal = min(1.0, max(0, it - cfg.pres_warmup_iters) / max(1, cfg.pres_anneal_iters))
        if cfg.elbo_samples > 1:
            images = images.repeat(cfg.elbo_samples, 1, 1, 1)
        if cfg.elbo_enumerate:
            return self._enumerated_loss(images, it, warm, anneal)
        sample = sample_q(self.model, images, self.world, anneal, cfg.pres_prior_start, force_present=warm,
                          relax_color=it < cfg.elbo_relax_color_iters, end=cfg.pres_prior_end)
        image_blur = cfg.elbo_image_blur_px * max(0.0, 1 - it / max(1, cfg.elbo_image_blur_iters))
        log_lik = log_likelihood(sample.objects, images, self.world, cfg.likelihood_scale, self.edge_blur(it),
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

    def _enumerated_loss(self, images: torch.Tensor, it: int, warm: bool,
                         anneal: float) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``enumerated_elbo`` (``--elbo_enumerate``): no score function."""
        cfg, n = self.cfg, self.model.config.max_steps
        steps = sample_steps(self.model, images, self.world, relax_color=it < cfg.elbo_relax_color_iters)
        image_blur = cfg.elbo_image_blur_px * max(0.0, 1 - it / max(1, cfg.elbo_image_blur_iters))
        edge_blur = self.edge_blur(it)
        faces = cfg.elbo_faces_per_pixel if it >= cfg.elbo_faces_per_pixel_from else SOFT_FACES_PER_PIXEL

        def likelihood(objects: Latents, x: torch.Tensor, albedo: torch.Tensor | None) -> torch.Tensor:
            return log_likelihood(objects, x, self.world, cfg.likelihood_scale, edge_blur, image_blur, albedo, faces)

        rho = [pres_prior(n, t, anneal, cfg.pres_prior_start, cfg.pres_prior_end) for t in range(n)]
        mode = ("first" if cfg.pres_warmup_first else "all") if warm else ""
        objective, elbo, diag = enumerated_elbo(steps, images, rho, likelihood, mode,
                                                local_scale=self.local_scale(it),
                                                draw_at_least_one=cfg.elbo_draw_at_least_one, explore=cfg.elbo_explore,
                                                fit_places=cfg.elbo_fit_places,
                                                profile=self.profile if it >= cfg.elbo_profile_iters else None,
                                                self_label=cfg.elbo_self_label if it >= cfg.elbo_self_label_iters else 0.0)
        self.local_var = 0.9 * self.local_var + 0.1 * float(diag["local_spread"]) ** 2
        stats = {"loss": float(-elbo.mean()) / images[0].numel(), "elbo": float(elbo.mean()),
                 **{k: float(v.mean()) for k, v in diag.items()}}
        return -objective.mean(), stats
