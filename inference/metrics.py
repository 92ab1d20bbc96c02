"""Accuracy of inferred scenes against the truth (DESIGN.md §5).

Objects are matched per image by the Hungarian algorithm on the distance between table
positions (x, y); counts are compared as numbers. Over matched pairs: shape and colour accuracy,
position error in cm, yaw error in degrees modulo the true shape's symmetry (shapes whose yaw is
unobservable are left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


def yaw_error_deg(pred: np.ndarray, true: np.ndarray, symmetry_deg: np.ndarray) -> np.ndarray:
    """|pred - true| in degrees, folded by each shape's symmetry: result in [0, symmetry / 2].
    pred, true: radians. symmetry_deg: e.g. 90 for a cube, 360 for none."""
    diff = np.degrees(np.asarray(pred) - np.asarray(true))
    sym = np.asarray(symmetry_deg, dtype=np.float64)
    d = np.mod(diff, sym)
    return np.minimum(d, sym - d)


def match(pred_xy: np.ndarray, true_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching on Euclidean distance. pred_xy (P, 2), true_xy (Q, 2) ->
    (pred indices, true indices) of the min(P, Q) matched pairs."""
    if len(pred_xy) == 0 or len(true_xy) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cost = np.linalg.norm(pred_xy[:, None, :] - true_xy[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


@dataclass
class Scores:
    """Accumulates per-image results; ``summary()`` gives the report."""

    shape_names: tuple[str, ...]
    symmetry_deg: tuple[float | None, ...]
    count_true: list[int] = field(default_factory=list)
    count_pred: list[int] = field(default_factory=list)
    shape_ok: list[bool] = field(default_factory=list)
    color_ok: list[bool] = field(default_factory=list)
    pos_err_cm: list[float] = field(default_factory=list)
    yaw_err_deg: list[float] = field(default_factory=list)
    confusion: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = len(self.shape_names)
        self.confusion = np.zeros((s, s), dtype=np.int64)

    def add(self, pred: dict[str, np.ndarray], true: dict[str, np.ndarray]) -> None:
        """One image. Each dict: shape (K,), color (K,), position (K, 2+) metres, yaw (K,) radians,
        holding only present objects."""
        self.count_true.append(len(true["shape"]))
        self.count_pred.append(len(pred["shape"]))
        pi, ti = match(np.asarray(pred["position"])[:, :2], np.asarray(true["position"])[:, :2])
        for p, t in zip(pi, ti):
            ts, ps = int(true["shape"][t]), int(pred["shape"][p])
            self.confusion[ts, ps] += 1
            self.shape_ok.append(ts == ps)
            self.color_ok.append(int(true["color"][t]) == int(pred["color"][p]))
            d = np.asarray(pred["position"][p][:2]) - np.asarray(true["position"][t][:2])
            self.pos_err_cm.append(float(np.linalg.norm(d)) * 100)
            sym = self.symmetry_deg[ts]
            if sym is not None:
                self.yaw_err_deg.append(float(yaw_error_deg(pred["yaw"][p], true["yaw"][t], sym)))

    def summary(self) -> dict:
        ct, cp = np.array(self.count_true), np.array(self.count_pred)
        q = lambda xs, p: float(np.quantile(xs, p)) if len(xs) else math.nan  # noqa: E731
        per_count = {
            int(k): {"scenes": int((ct == k).sum()), "count_accuracy": float((cp[ct == k] == k).mean())}
            for k in np.unique(ct)
        }
        return {
            "scenes": len(ct),
            "count_accuracy": float((ct == cp).mean()) if len(ct) else math.nan,
            "shape_accuracy": float(np.mean(self.shape_ok)) if self.shape_ok else math.nan,
            "color_accuracy": float(np.mean(self.color_ok)) if self.color_ok else math.nan,
            "position_error_cm": {"median": q(self.pos_err_cm, 0.5), "p90": q(self.pos_err_cm, 0.9)},
            "yaw_error_deg": {"median": q(self.yaw_err_deg, 0.5), "p90": q(self.yaw_err_deg, 0.9)},
            "matched_objects": len(self.shape_ok),
            "per_count": per_count,
            "shape_confusion": {"labels": list(self.shape_names), "rows_true_cols_pred": self.confusion.tolist()},
        }


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE: the mean over equal-width confidence bins of |accuracy - mean confidence|, weighted
    by the share of predictions in each bin. confidence (M,) in [0, 1], correct (M,) bool."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=np.float64).reshape(-1)
    if not len(conf):
        return math.nan
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for k in range(bins):
        sel = which == k
        if sel.any():
            total += sel.mean() * abs(ok[sel].mean() - conf[sel].mean())
    return round(float(total), 5)


def scores_for(world) -> Scores:
    return Scores(world.shape_names, tuple(s.yaw_symmetry_deg for s in world.shapes))


def add_batch(scores: Scores, pred_scene, true_scene) -> None:
    """Add B images given two SceneBatch-like objects (present, shape, color, position, yaw)."""
    for b in range(pred_scene.present.shape[0]):
        scores.add(_objects(pred_scene, b), _objects(true_scene, b))


def _objects(scene, b: int) -> dict[str, np.ndarray]:
    m = scene.present[b].bool().cpu().numpy()
    return {k: getattr(scene, k)[b].detach().cpu().numpy()[m] for k in ("shape", "color", "position", "yaw")}
