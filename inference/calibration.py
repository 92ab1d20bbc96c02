"""What turns the network's outputs and the fit into numbers a robot can act on.

Three parts, all fitted on the network's own validation images by ``training.calibrate`` and
stored in the weights' ``.json`` (``meta.calibration``); weights without them get the identity
(``fitted`` false, and the answers say so):

- ``temperature``: logit divisors for presence, shape and colour (temperature scaling), so that
  among objects reported with probability p, about p are right.
- ``trust``: the probability that the whole answer is right (the count, and every object's
  shape and colour), a logistic function of the answer's joint probability under the network
  (the product of its calibrated presence, shape and colour probabilities, and of stopping
  where it stopped) and of the generative fit (``inference.fit``).
- ``mirror``: the answers are read from each view and its mirror image, averaged
  (``inference.infer.mirror_average``); the three parts above are fitted to those answers.
- ``limits``: the bounds of the world checks that set ``in_world``: the image fit, the
  unexplained share, the spill, the fill, the table's spread and the outline agreement that 99.7% of
  validation images stay within, and the least table-floor contrast they show where floor is
  in view; and the highest score of the out-of-set detector.
- ``foreign``: the out-of-set detector (``inference.foreign``), learnt by ``training.outliers``
  on renders with the network frozen; weights without it skip that check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from inference.fit import Fit
from inference.foreign import ForeignHead
from inference.infer import Temperatures

LOG_P_FLOOR = -30.0  # the joint log-probability is clamped here (an answer the network rules out)


@dataclass(frozen=True)
class WorldLimits:
    """An image is in the world when its fit is at least ``min_fit``, its unexplained share at
    most ``max_unexplained``, its spill at most ``max_spill``, its fill at least ``min_fill``, its table spread at most
    ``max_spread``, its outline agreement at least ``min_outline``, its step at least
    ``min_step``, where floor shows, its table-floor contrast at least ``min_edge``
    (``inference.fit``), and, where the weights hold an out-of-set detector, its score at most
    ``max_foreign`` (``inference.foreign``). The defaults flag nothing (weights calibrated before a check existed
    load with its default)."""

    min_fit: float = 0.0
    max_unexplained: float = 1.0
    max_spill: float = 1.0
    max_spread: float = math.inf
    min_outline: float = 0.0
    min_edge: float = 0.0
    min_fill: float = 0.0
    min_step: float = 0.0
    max_foreign: float = 1.0

    def check(self, fit: Fit) -> torch.Tensor:
        """(B,) bool: which images pass every check."""
        edge_ok = torch.isnan(fit.edge_contrast) | (fit.edge_contrast >= self.min_edge)
        foreign_ok = True if fit.foreign is None else fit.foreign <= self.max_foreign  # no detector: nothing to bound
        return (fit.image >= self.min_fit) & (fit.unexplained <= self.max_unexplained) \
            & (fit.spill <= self.max_spill) & (fit.table_spread <= self.max_spread) \
            & (fit.outline >= self.min_outline) & (fit.fill >= self.min_fill) & (fit.step >= self.min_step) & edge_ok \
            & foreign_ok


@dataclass(frozen=True)
class Calibration:
    """See the module docstring. trust: weights on (the joint log-probability, the image fit)
    and a bias."""

    temperature: Temperatures = Temperatures()
    trust: tuple[float, float, float] = (1.0, 0.0, 0.0)
    limits: WorldLimits = field(default_factory=WorldLimits)
    fitted: bool = False
    mirror: bool = False
    foreign: ForeignHead | None = None

    @classmethod
    def from_meta(cls, meta: dict) -> Calibration:
        """From a weights file's metadata; the identity when it holds none. World limits alone
        (adapted weights keep their source's: ``inference.adapt``) give an uncalibrated
        ``Calibration`` that still flags images unlike the world."""
        d = meta.get("calibration")
        if not d:
            return cls()
        limits = WorldLimits(**d["limits"]) if "limits" in d else WorldLimits()
        mirror = bool(d.get("mirror", False))
        head = ForeignHead.from_meta(d["foreign"]) if d.get("foreign") else None
        if "temperature" not in d:
            return cls(limits=limits, mirror=mirror, foreign=head)
        return cls(Temperatures(**d["temperature"]), tuple(d["trust"]), limits, True, mirror, head)

    def to_meta(self) -> dict:
        out = {"temperature": asdict(self.temperature), "trust": list(self.trust), "limits": asdict(self.limits),
               "mirror": self.mirror}
        return {**out, "foreign": self.foreign.to_meta()} if self.foreign is not None else out

    def trust_of(self, joint_log_p: torch.Tensor, fit: torch.Tensor) -> torch.Tensor:
        """(B,) probability that each answer is entirely right."""
        a, b, c = self.trust
        return torch.sigmoid(a * joint_log_p.clamp_min(LOG_P_FLOOR) + b * fit + c)


def joint_log_prob(confidence: torch.Tensor, shape_prob: torch.Tensor, color_prob: torch.Tensor,
                   present: torch.Tensor) -> torch.Tensor:
    """(B,) log-probability of an answer under the network: each found object's presence, shape
    and colour probabilities, and the probability of stopping after the last one (when a slot was
    left). All (B, T); ``present`` (B, T) bool with found objects first."""
    eps = 1e-6
    found = (confidence.clamp_min(eps).log() + shape_prob.clamp_min(eps).log()
             + color_prob.clamp_min(eps).log()) * present
    count = present.sum(1, keepdim=True)
    stop_p = 1 - confidence.gather(1, count.clamp(max=present.shape[1] - 1)).squeeze(1)
    stop = torch.where(count.squeeze(1) < present.shape[1], stop_p.clamp_min(eps).log(), torch.zeros_like(stop_p))
    return found.sum(1) + stop
