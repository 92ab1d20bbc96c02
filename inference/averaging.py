"""A running mean of a model's weights along its training path (stochastic weight averaging,
Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018).

Late in a run whose accuracy still swings from one evaluation to the next, the last iterate is
a draw from a band; the mean of snapshots taken along the path lies near the band's middle.
``training.train`` keeps one from ``--average_from`` on and stores it in each checkpoint under
``weight_mean`` (``model_weights`` gives such a checkpoint's weights with the mean in place);
``inference.adapt`` keeps one over the last ``AdaptConfig.average`` share of its steps and writes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightMean:
    """The mean of ``count`` snapshots of a model's parameters (buffers are not averaged: the
    networks here keep only constants in them)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self.mean = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def add(self, model: torch.nn.Module) -> None:
        """One more snapshot: the model's current parameters."""
        self.count += 1
        for name, p in model.named_parameters():
            self.mean[name].lerp_(p.detach(), 1.0 / self.count)

    def state(self) -> dict:
        """What a checkpoint stores (the mean's own tensors: saved at once, not kept)."""
        return {"mean": self.mean, "count": self.count}

    def load(self, state: dict) -> None:
        shapes = {k: tuple(v.shape) for k, v in state["mean"].items()}
        if shapes != {k: tuple(v.shape) for k, v in self.mean.items()}:
            raise ValueError("the stored weight mean is of another architecture")
        self.count = int(state["count"])
        for k, v in state["mean"].items():
            self.mean[k].copy_(v)

    @torch.no_grad()
    def write_to(self, model: torch.nn.Module) -> None:
        """Put the mean in the model's parameters."""
        for name, p in model.named_parameters():
            p.copy_(self.mean[name])

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The model carries the mean inside the block and its own weights again after it."""
        live = WeightMean(model)
        self.write_to(model)
        try:
            yield
        finally:
            live.write_to(model)


def model_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """A trainer checkpoint's model state dict: its weight mean where it keeps one with at least
    one snapshot, else its last iterate."""
    weights = dict(checkpoint["model"])
    mean = checkpoint.get("weight_mean")
    if mean and mean["count"] > 0:
        weights.update(mean["mean"])
    return weights
