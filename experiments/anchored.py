"""AIR with positions anchored to the attention: the ELBO-from-scratch variant.

A step's mean table position is the table point under its attention centroid (a quadratic map
from image to table fitted to the world's camera, ``table_anchor``) plus an offset of at most
``position_scale``, optionally squashed into a square of half-side ``position_bound``. A step
that attends to an object so starts next to it, and no step can put its object where it did
not look: ELBO training from scratch finds positions through the renderer's short-range
gradients only (model card, "ELBO training alone"). Trained with ``--anchor_where=True``
(``--bound_position=True``) in ``training.train``; the weights' ``"air"`` config then holds
``anchor`` and ``position_bound``, and they load with ``load_anchored``:

    python -m experiments.anchored --weights weights/reduced/elbo.safetensors --scenes 500 --seed 12345
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference import evaluate
from inference.checkpoint import load_weights
from inference.network import AIR, AIRConfig, config_from_dict
from renderer.world import World

ANCHOR_TERMS = ("1", "u", "v", "uu", "uv", "vv")


def anchor_features(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2) normalised image coordinates -> (..., 6) the terms of ANCHOR_TERMS."""
    u, v = uv[..., 0], uv[..., 1]
    return torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], dim=-1)


def table_anchor(world: World, height: float = 0.08) -> tuple[float, ...]:
    """Least-squares quadratic map from normalised image coordinates (u, v in [-1, 1], as the
    attention centroid) to table (x, y) in metres, for points ``height`` above the table (about an
    object's centre): 12 coefficients, x's 6 then y's. Fitted on a grid of table points
    projected by the world's camera; the residual is a few millimetres over the placement square."""
    from renderer.camera import project

    r = torch.linspace(-world.placement_half_extent - 0.05, world.placement_half_extent + 0.05, 21)
    x, y = torch.meshgrid(r, r, indexing="ij")
    xyz = torch.stack([x.flatten(), y.flatten(), torch.full_like(x.flatten(), height)], dim=-1)
    s = world.image_size
    uv = project(xyz, world, s, s)[0] / s * 2 - 1
    coef = torch.linalg.lstsq(anchor_features(uv).double(), xyz[:, :2].double()).solution  # (6, 2)
    return tuple(float(c) for c in coef.T.flatten())


@dataclass(frozen=True)
class AnchoredAIRConfig(AIRConfig):
    """``AIRConfig`` plus the anchor.

    anchor: empty, or the 12 coefficients of ``table_anchor``; with them position_scale is the
        largest offset (metres) from the anchored point.
    position_bound: > 0: the mean position is squashed into [-bound, bound] metres per axis.
    """

    anchor: tuple[float, ...] = ()
    position_bound: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.anchor and len(self.anchor) != 2 * len(ANCHOR_TERMS):
            raise ValueError(f"anchor needs {2 * len(ANCHOR_TERMS)} coefficients, got {len(self.anchor)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnchoredAIRConfig:
        return config_from_dict(cls, d)


class AnchoredAIR(AIR):
    """``AIR`` whose ``position_mean`` follows the attention (module docstring)."""

    config_type = AnchoredAIRConfig

    def __init__(self, config: AnchoredAIRConfig) -> None:
        super().__init__(config)
        anchor = torch.tensor(config.anchor, dtype=torch.float32).view(2, -1).T if config.anchor else None
        self.register_buffer("anchor", anchor, persistent=False)  # (6, 2) or None

    def position_mean(self, where: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        if self.anchor is None:
            mean = super().position_mean(where, centre)
        else:  # the table point under the attention centroid, plus an offset of at most position_scale
            mean = torch.tanh(where[:, :2]) * self.config.position_scale + anchor_features(centre) @ self.anchor
        bound = self.config.position_bound
        return bound * torch.tanh(mean / bound) if bound > 0 else mean


def load_anchored(path: str | Path, device: torch.device | str = "cpu") -> tuple[AnchoredAIR, World, dict[str, Any]]:
    """``inference.checkpoint.load_weights`` for weights trained with the anchor."""
    return load_weights(path, device, network=AnchoredAIR)


if __name__ == "__main__":
    sys.exit(evaluate.main(load=load_anchored))
