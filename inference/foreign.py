"""The out-of-set detector: does an image hold something outside the world's shape set?

The fit (``inference.fit``) renders the answer and finds what it cannot explain, but an object
outside the shape set is often explained well enough by the nearest shape the network knows: a
flat disc drawn as a cube covers most of the disc, a pole drawn as a box stands where the pole's
foot is. The network's own image features see more than its six answers say. This head reads
them: the encoder's map (one feature vector per 4 x 4 pixels of the view), standardised, through
one 3 x 3 convolution, a ReLU and a 1 x 1 convolution to a logit per cell; the image's score is
the log of the summed exponentials of the logits over the cells the camera saw and the answer
draws as table or object (``cells_on_table``; a soft maximum: one strange object is enough),
averaged with its mirror image's where the mirror is read (``inference.api.Predictor.fit``).
It costs about 0.35 ms a pass on one CPU core, about 1 ms an answer with the mirror reading.

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
    """The detector's numbers: ``hidden`` (H) units reading ``channels`` (C) features through a
    ``kernel`` x ``kernel`` convolution; ``values``: float32, little-endian, in this order: the
    features' mean and scale (C each), the convolution's weights (H, C, k, k) and biases (H),
    the output weights (H) and bias (1). Stored in the weights' JSON as base64 text."""

    hidden: int
    channels: int
    kernel: int
    values: bytes

    @classmethod
    def from_tensors(cls, mean: torch.Tensor, scale: torch.Tensor, conv: torch.Tensor, conv_bias: torch.Tensor,
                     out: torch.Tensor, out_bias: torch.Tensor | float) -> ForeignHead:
        parts = [torch.as_tensor(t).detach().cpu().float().reshape(-1) for t in (mean, scale, conv, conv_bias, out,
                                                                                 out_bias)]
        hidden, channels, kernel = conv.shape[0], conv.shape[1], conv.shape[-1]
        return cls(hidden, channels, kernel, torch.cat(parts).numpy().astype("<f4").tobytes())

    @classmethod
    def from_meta(cls, d: dict[str, Any]) -> ForeignHead:
        head = cls(int(d["hidden"]), int(d["channels"]), int(d["kernel"]), base64.b64decode(d["float32_base64"]))
        c, h, k = head.channels, head.hidden, head.kernel
        if len(head.values) != 4 * (2 * c + h * c * k * k + 2 * h + 1):
            raise ValueError(f"the out-of-set detector's numbers do not fit its shape (hidden {h}, channels {c}, "
                             f"kernel {k})")
        return head

    def to_meta(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "channels": self.channels, "kernel": self.kernel,
                "float32_base64": base64.b64encode(self.values).decode("ascii")}

    @cached_property
    def _tensors(self) -> tuple[torch.Tensor, ...]:
        c, h, k = self.channels, self.hidden, self.kernel
        flat = torch.from_numpy(np.frombuffer(self.values, dtype="<f4").astype(np.float32))
        mean, scale, conv, conv_bias, out, out_bias = flat.split([c, c, h * c * k * k, h, h, 1])
        return (mean.reshape(1, c, 1, 1), scale.reshape(1, c, 1, 1), conv.reshape(h, c, k, k), conv_bias,
                out.reshape(1, h, 1, 1), out_bias[0])

    def cell_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w) each cell's logit from the encoder's map (B, C, h, w)."""
        mean, scale, conv, conv_bias, out, out_bias = (t.to(features.device) for t in self._tensors)
        hidden = F.relu(F.conv2d((features - mean) / scale, conv, conv_bias, padding=conv.shape[-1] // 2))
        return (hidden * out).sum(1) + out_bias

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
