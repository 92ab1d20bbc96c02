"""The amortised objective: the generative model teaches its own inference network.

The generative model is fully specified, so it draws pairs (x, z) from the prior and renders
them; the network maximises log q(z, n | x) on them ("sleep" / amortised training). This is how
the shipped weights were trained (``training/``), and what ``inference.adapt`` runs beside the
ELBO on prior samples of the learned world (the wake-sleep pairing).

Objects have no natural order, but q generates them one after another, so q assigns a
probability to every ordering of the same set. The probability of the *set* is the sum over
its orderings: log q(set | x) = logsumexp over the n! orderings of log q(sequence | x). We
compute exactly that (N <= 3: at most 6 orderings, the encoder runs once and only the small
recurrent core runs per ordering). Unlike a fixed canonical order (e.g. nearest first), it does
not force the network to resolve ties between objects it cannot order reliably; unlike a
minimum over orderings, it is the true likelihood of the set, with smooth gradients that let the
network settle on whichever order it finds easiest.

Attention target: the labels also say where each object is in the image, so each step's
attention map gets an auxiliary cross-entropy toward the feature cell that holds the projected
centre of the object that step explains (weight ``attention_weight``). This is supervision the
ELBO does not have; in amortised training it only tells the network early where to look, which
otherwise it finds slowly (model card, "How it was trained").
"""

from __future__ import annotations

import itertools

import torch

from inference.distributions import Latents, log_prob
from inference.network import FEATURE_STRIDE, AIR, StepOutput
from inference.views import ViewInput, to_view
from renderer.camera import project
from renderer.pinhole import Cameras
from renderer.scene import SceneBatch
from renderer.world import World


def scene_latents(scene: SceneBatch, view: Cameras | None = None) -> Latents:
    """A prior/dataset scene batch (present slots first) -> per-step latents (T = N): on the
    table, or, given the canonical ``view`` cameras, as a view_inputs network predicts them
    (``inference.views.to_view``)."""
    if view is None:
        return Latents(scene.present.float(), scene.shape, scene.color, scene.position[..., :2], scene.yaw)
    centre, yaw = to_view(scene, view)
    return Latents(scene.present.float(), scene.shape, scene.color, centre, yaw)


def step_log_prob(model: AIR, out: StepOutput, target: Latents, t: int) -> dict[str, torch.Tensor]:
    """Per-term log q of step t's true latents (``inference.distributions.log_prob``). Each (B,),
    already masked: pres counts only while the sequence is running; what/where only for
    present objects."""
    terms = log_prob(out, Latents(*(x[:, t] for x in target)), model.yaw)
    running = torch.ones_like(target.pres[:, t]) if t == 0 else target.pres[:, t - 1]
    terms["pres"] = terms["pres"] * running
    return terms


def orderings(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n!, n) int64: every permutation of range(n)."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.int64, device=device)


def attention_cells(scene: SceneBatch, world: World, image_size: int, view: Cameras | None = None) -> torch.Tensor:
    """(B, N) int64 index of the feature cell holding each object's projected centre (in the
    world camera's image, or in the canonical ``view``)."""
    if view is None:
        uv, _ = project(scene.position, world, image_size, image_size)
    else:
        uv, _ = view.project(scene.position)
    side = image_size // FEATURE_STRIDE
    cell = (uv / FEATURE_STRIDE).floor().long().clamp(0, side - 1)
    return cell[..., 1] * side + cell[..., 0]


def amortised_loss(model: AIR, images: torch.Tensor, scene: SceneBatch, world: World | None = None,
                   residuals: list[torch.Tensor] | None = None,
                   attention_weight: float = 1.0, view: ViewInput | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """-mean log q(set | x) over the batch (+ the attention target when ``world`` is given),
    and per-term diagnostics.

    images: (B, 3, S, S) in [0, 1]. scene: B scenes with present slots first (as the prior
    draws them). residuals: DAIR only, one residual image batch per step; computing them per
    ordering is too costly, so a DAIR model is trained on the scene's own slot order, which the
    caller makes a readable one (``nearest_first``). view: a view_inputs network's input
    (``inference.views.view_input``); ``images`` is then its pixels.
    """
    b, n = scene.present.shape
    if n != model.config.max_steps:
        raise ValueError(f"scene has {n} slots, the model {model.config.max_steps} steps")
    if model.config.view_inputs != (view is not None):
        raise ValueError("pass view= exactly when the model has view_inputs")
    cams = None if view is None else view.view
    features = model.encode(images) if view is None else model.encode(images, view.coverage, view.features)
    latents = scene_latents(scene, cams)
    if model.config.dair:
        if residuals is None or len(residuals) != n:
            raise ValueError(f"a DAIR model needs {n} residual batches (see dair_residuals), got "
                             f"{None if residuals is None else len(residuals)}")
        perms = torch.arange(n, device=images.device)[None]
        ctx = [model.context(features, r, model.residual_encoder(r)) for r in residuals]
    else:
        perms = orderings(n, images.device)
        ctx = model.context(features, images, camera=None if view is None else view.features)
    p = perms.shape[0]
    # (B * P) sequences: scene b under ordering perm
    idx = perms[None].expand(b, p, n).reshape(b * p, n)
    rep = lambda x: x.repeat_interleave(p, dim=0)  # noqa: E731
    gather = lambda x: torch.gather(rep(x), 1, idx if x.dim() == 2 else idx[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    permuted = Latents(*(gather(x) for x in latents))
    cells = gather(attention_cells(scene, world, images.shape[-1], cams)) if world is not None else None
    outs = model.teacher_forced(ctx, permuted)
    terms: dict[str, torch.Tensor] = {}
    attention_nll = images.new_zeros(b * p)
    for t, out in enumerate(outs):
        for name, lp in step_log_prob(model, out, permuted, t).items():
            terms[name] = terms.get(name, 0) + lp
        if cells is not None:
            picked = out.attention.gather(1, cells[:, t : t + 1])[:, 0]
            attention_nll = attention_nll - torch.log(picked + 1e-8) * permuted.pres[:, t]
    # the attention target follows the ordering q prefers, so it enters the per-ordering score
    seq_lp = (sum(terms.values()) - attention_weight * attention_nll).view(b, p)
    # orderings that put an absent slot before a present one are not sequences q can emit
    pres = permuted.pres.view(b, p, n)
    valid = (pres[..., 1:] <= pres[..., :-1]).all(-1)
    count = scene.present.sum(1)
    dup = torch.lgamma((n - count + 1).float())  # orderings of absent slots are the same sequence
    set_lp = torch.logsumexp(seq_lp.masked_fill(~valid, -torch.inf), dim=1) - dup
    loss = -set_lp.mean()
    best = seq_lp.masked_fill(~valid, -torch.inf).argmax(1)  # diagnostics under q's preferred ordering
    stats = {k: -(v.view(b, p).gather(1, best[:, None]).mean().item()) for k, v in terms.items()}
    stats["attention"] = attention_nll.view(b, p).gather(1, best[:, None]).mean().item()
    stats["loss"] = loss.item()
    return loss, stats
