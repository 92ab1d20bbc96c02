"""The out-of-set detector: does an image hold something outside the world's shape set?

The fit (``inference.fit``) renders the answer and finds what it cannot explain, but an object
outside the shape set is often explained well enough by the nearest shape the network knows: a
flat disc drawn as a cube covers most of the disc, a pole drawn as a box stands where the pole's
foot is. The network's own image features see more than its six answers say. This head reads
them: the encoder's map (one feature vector per 4 x 4 pixels of the view), standardised and
projected to a few features per cell, then a 3 x 3 convolution over them and a 1 x 1 convolution to
a logit per cell; the image's score is
the log of the summed exponentials of the logits over the cells the camera saw and the answer
draws as table or object (``cells_on_table``; a soft maximum: one strange object is enough),
averaged with its mirror image's where the mirror is read (``inference.api.Predictor.fit``).
It costs about 0.13 ms a view on one CPU core, about 0.23 ms for a view and its mirror in one pass.

It is learnt after the network, which stays as it is (``training.outliers``: outlier exposure),
from photo renders of the world's scenes and of scenes holding objects of other proportions and
sizes, and stored as plain numbers in the weights' calibration (``meta.calibration.foreign``).
``inference.calibration.WorldLimits.max_foreign`` bounds the score as the other checks are bounded.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from inference.network import FEATURE_STRIDE


@dataclass(frozen=True)
class ForeignHead:
    """The detector's numbers: the encoder's ``channels`` (C) features, standardised and
    projected to ``width`` (W) by a 1 x 1 convolution (the standardisation folded into its
    weights), a ReLU, a ``kernel`` x ``kernel`` convolution W -> W, a ReLU, and a 1 x 1
    convolution to one logit per cell. ``values``: float32, little-endian, in this order: the
    projection's weights (W, C) and biases (W), the convolution's weights (W, W, k, k) and biases
    (W), the output weights (W) and bias (1). Stored in the weights' JSON as base64 text."""

    width: int
    channels: int
    kernel: int
    values: bytes

    @classmethod
    def from_tensors(cls, mean: torch.Tensor, scale: torch.Tensor, project: torch.Tensor, project_bias: torch.Tensor,
                     conv: torch.Tensor, conv_bias: torch.Tensor, out: torch.Tensor,
                     out_bias: torch.Tensor | float) -> ForeignHead:
        """From a trained head that standardises its input, ``(x - mean) / scale``, before the
        projection ``project`` (W, C): that step is folded into the projection."""
        project = torch.as_tensor(project).detach().reshape(project.shape[0], -1).double()
        mean, scale = (torch.as_tensor(t).detach().double() for t in (mean, scale))
        folded = project / scale
        folded_bias = torch.as_tensor(project_bias).detach().double() - folded @ mean
        parts = [torch.as_tensor(t).detach().cpu().float().reshape(-1)
                 for t in (folded, folded_bias, conv, conv_bias, out, out_bias)]
        width, channels, kernel = project.shape[0], project.shape[1], conv.shape[-1]
        return cls(width, channels, kernel, torch.cat(parts).numpy().astype("<f4").tobytes())

    @classmethod
    def from_meta(cls, d: dict[str, Any]) -> ForeignHead:
        if "width" not in d:
            raise ValueError("the out-of-set detector in these weights has an older layout (one wide 3 x 3 "
                             "convolution) that is no longer read: refit it (python -m training.outliers fit) "
                             "and recalibrate (python -m training.calibrate)")
        head = cls(int(d["width"]), int(d["channels"]), int(d["kernel"]), base64.b64decode(d["float32_base64"]))
        if len(head.values) != 4 * len(head):
            raise ValueError(f"the out-of-set detector's numbers do not fit its shape (width {head.width}, "
                             f"channels {head.channels}, kernel {head.kernel})")
        return head

    @property
    def _sizes(self) -> list[int]:
        """How many numbers each part of ``values`` holds, in order."""
        c, w, k = self.channels, self.width, self.kernel
        return [w * c, w, w * w * k * k, w, w, 1]

    def __len__(self) -> int:
        """How many numbers the layout holds."""
        return sum(self._sizes)

    def to_meta(self) -> dict[str, Any]:
        return {"width": self.width, "channels": self.channels, "kernel": self.kernel,
                "float32_base64": base64.b64encode(self.values).decode("ascii")}

    @cached_property
    def _tensors(self) -> tuple[torch.Tensor, ...]:
        c, w, k = self.channels, self.width, self.kernel
        flat = torch.from_numpy(np.frombuffer(self.values, dtype="<f4").astype(np.float32))
        project, project_bias, conv, conv_bias, out, out_bias = flat.split(self._sizes)
        return (project.reshape(w, c, 1, 1), project_bias, conv.reshape(w, w, k, k), conv_bias,
                out.reshape(1, w, 1, 1), out_bias)

    def cell_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w) each cell's logit from the encoder's map (B, C, h, w)."""
        project, project_bias, conv, conv_bias, out, out_bias = (t.to(features.device) for t in self._tensors)
        x = F.relu(F.conv2d(features, project, project_bias))
        x = F.relu(F.conv2d(x, conv, conv_bias, padding=conv.shape[-1] // 2))
        return F.conv2d(x, out, out_bias)[:, 0]

    def score(self, features: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """(B,) the image's logit: a soft maximum over ``cells`` (B, h, w) bool, the cells to
        read (``cells_on_table``)."""
        logits = self.cell_logits(features).masked_fill(~cells, -1e4)
        return torch.logsumexp(logits.flatten(1), 1)


def cells_on_table(coverage: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """(B, h, w) bool: the encoder's cells (``FEATURE_STRIDE`` pixels of the view square) that
    the camera saw and that the answer draws as table or object, each for at least half its
    area, from the view's ``coverage`` (B, 1, S, S) and ``drawn`` (B, s, s) bool at any side s
    that S / ``FEATURE_STRIDE`` divides. Objects stand on the table; what lies beyond it (a
    table's legs, the floor, the room) is not the detector's business."""
    h = coverage.shape[-1] // FEATURE_STRIDE
    return seen_cells(coverage) & (F.avg_pool2d(drawn[:, None].float(), drawn.shape[-1] // h)[:, 0] >= 0.5)


def seen_cells(coverage: torch.Tensor) -> torch.Tensor:
    """(B, h, w) bool: the encoder's cells that the camera saw for at least half their area,
    from the view's ``coverage`` (B, 1, S, S)."""
    return F.avg_pool2d(coverage.float(), FEATURE_STRIDE)[:, 0] > 0.5
