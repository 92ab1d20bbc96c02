"""The per-object distribution q(z | x) of one step (AIR) or one slot (the supervised counterpart).

For one object, with any leading batch shape (...):

    z_pres   Bernoulli(pres_logit)                              is the object there?
    z_what   Categorical(shape_logits), Categorical(color_logits)
    z_where  position (x, y) on the table: Normal(where_mean, exp(where_log_std)), metres
             yaw: von Mises on k * yaw with mean yaw_mu and concentration exp(yaw_log_kappa),
             k = the shape's yaw symmetry order (4 cube, 2 box, 1 wedge); shapes with no
             observable yaw (k = 0) have no yaw term.

The network outputs yaw parameters for each order in ``YAW_ORDERS``; ``YawTable`` picks the
one a shape reads (the "yaw-slot gather"). Here: raw head outputs -> parameters
(``object_params``), log-probabilities of given latents (``log_prob``) and the greedy decode
(``greedy``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

YAW_ORDERS = (1, 2, 4)  # the symmetry orders k the network outputs a yaw distribution for
HEAD_SIZES = ("pres", "shape", "color", "where", "yaw")  # order of the raw outputs, see ``head_sizes``


class Latents(NamedTuple):
    """Objects, batched. For B images and T steps (or slots): pres (B, T) float 0/1,
    shape/color (B, T) int64, position (B, T, 2) table (x, y) in metres, yaw (B, T) radians."""

    pres: torch.Tensor
    shape: torch.Tensor
    color: torch.Tensor
    position: torch.Tensor
    yaw: torch.Tensor


def head_sizes(num_shapes: int, num_colors: int) -> list[int]:
    """Widths of the raw outputs ``object_params`` reads, in ``HEAD_SIZES`` order:
    pres 1, shape S, colour K, where 4 (mean x, y and log std x, y), yaw 3 x len(YAW_ORDERS)
    (cos, sin and log kappa per order)."""
    return [1, num_shapes, num_colors, 4, 3 * len(YAW_ORDERS)]


def object_params(pres: torch.Tensor, shape: torch.Tensor, color: torch.Tensor, where: torch.Tensor,
                  yaw: torch.Tensor, position_scale: float, where_mean: torch.Tensor | None = None) -> dict:
    """Raw head outputs (..., width) -> the distribution parameters, as keyword arguments of
    ``StepOutput`` / ``SlotOutput``: pres_logit (...), shape_logits (..., S), color_logits (..., K),
    where_mean (..., 2) metres, where_log_std (..., 2), yaw_mu (..., 3) mean of k * yaw for k in
    YAW_ORDERS, yaw_log_kappa (..., 3).

    ``where`` is in units of ``position_scale`` metres; ``where_mean`` replaces the mean
    position when the network computes its own (an anchored variant, ``experiments.anchored``).
    """
    yaw = yaw.unflatten(-1, (3, len(YAW_ORDERS)))  # (..., cos / sin / log kappa, order)
    return dict(
        pres_logit=pres[..., 0],
        shape_logits=shape,
        color_logits=color,
        where_mean=where[..., :2] * position_scale if where_mean is None else where_mean,
        where_log_std=where[..., 2:].clamp(-9.0, 2.0) + math.log(position_scale),
        yaw_mu=torch.atan2(yaw[..., 1, :], yaw[..., 0, :]),
        yaw_log_kappa=yaw[..., 2, :].clamp(-5.0, 9.0),
    )


class YawTable(nn.Module):
    """Per shape: its yaw symmetry order k (``order``, (S,) int64; 0 = yaw unobservable) and which
    of the ``YAW_ORDERS`` outputs it reads (``slot``, (S,) int64). Buffers only, not saved."""

    def __init__(self, yaw_orders: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("order", torch.tensor(yaw_orders), persistent=False)
        slot = [YAW_ORDERS.index(k) if k in YAW_ORDERS else 0 for k in yaw_orders]  # any one for k = 0: unused
        self.register_buffer("slot", torch.tensor(slot), persistent=False)

    def pick(self, per_order: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """per_order (..., len(YAW_ORDERS)), shape (...) int64 -> (...) the entry the shape reads."""
        return per_order.gather(-1, self.slot[shape][..., None])[..., 0]

    def point(self, yaw_mu: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Point estimate of yaw (...) radians for the given shapes: mu_k / k; 0 where unobservable."""
        k = self.order[shape]
        mu = self.pick(yaw_mu, shape)
        return torch.where(k > 0, mu / k.clamp_min(1).float(), torch.zeros_like(mu))


def von_mises_log_prob(x: torch.Tensor, mu: torch.Tensor, log_kappa: torch.Tensor) -> torch.Tensor:
    """log VonMises(x; mu, kappa), stable for large kappa (log I0(k) = log i0e(k) + k)."""
    kappa = log_kappa.exp()
    return kappa * (torch.cos(x - mu) - 1) - math.log(2 * math.pi) - torch.log(torch.special.i0e(kappa))


def _pick_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=-1).gather(-1, index[..., None])[..., 0]


def where_mean_for(params, shape: torch.Tensor) -> torch.Tensor:
    """The mean position (..., 2) of an object of ``shape`` (...): ``where_mean``, shifted by
    that shape's ``where_shift`` where the network has one (``AIRConfig.shape_positions``)."""
    shift = getattr(params, "where_shift", None)
    if shift is None:
        return params.where_mean
    return params.where_mean + shift.gather(-2, shape[..., None, None].expand(*shape.shape, 1, 2))[..., 0, :]


def log_prob(params, target: Latents, yaw: YawTable) -> dict[str, torch.Tensor]:
    """Per-term log q of ``target`` under ``params`` (a ``StepOutput`` / ``SlotOutput``, or any
    object with its fields, broadcast to the target's leading shape (...)). Returns "pres",
    "shape", "color", "where", "yaw", each (...); every term but "pres" is already masked by
    target.pres (what and where count only for present objects)."""
    pres, shape = target.pres, target.shape
    k = yaw.order[shape]
    yaw_lp = von_mises_log_prob(k.float() * target.yaw, yaw.pick(params.yaw_mu, shape),
                                yaw.pick(params.yaw_log_kappa, shape)) * (k > 0).float()
    xy = torch.distributions.Normal(where_mean_for(params, shape), params.where_log_std.exp()).log_prob(
        target.position).sum(-1)
    return {
        "pres": -F.binary_cross_entropy_with_logits(params.pres_logit, pres, reduction="none"),
        "shape": _pick_log_softmax(params.shape_logits, shape) * pres,
        "color": _pick_log_softmax(params.color_logits, target.color) * pres,
        "where": xy * pres,
        "yaw": yaw_lp * pres,
    }


def greedy(params, yaw: YawTable, pres: torch.Tensor) -> Latents:
    """The mode of each latent given presence ``pres`` (...) float 0/1: shape and colour argmax,
    the mean position (that shape's), the point yaw (``YawTable.point``). Leading shape (...) as ``params``."""
    shape = params.shape_logits.argmax(-1)
    return Latents(pres, shape, params.color_logits.argmax(-1), where_mean_for(params, shape),
                   yaw.point(params.yaw_mu, shape))
