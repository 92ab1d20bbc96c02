"""What ``bench.compare`` and ``bench.generalise`` share: the methods as image -> scene
functions, scoring (``inference.evaluate.evaluate`` on ``inference.evaluate.held_out_set``) and
timing them, training commands and the report's cells.

A method is ``predict(images (B, 3, S, S) float in [0, 1]) -> SceneBatch (B, N)``, or "not
trained" (its weights are missing: no number is made up; the report prints the command that
trains it).
"""

from __future__ import annotations

import math
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.render import machine  # noqa: F401  (re-exported for the report writers)
from experiments.supervised import load_supervised, predict_slots
from inference.checkpoint import load_weights
from inference.evaluate import Predict, evaluate, score
from inference.infer import to_scene
from renderer.scene import SceneBatch
from renderer.world import World

# The shipped AIR's training budget (runs/air/config.json), used for commands when no AIR
# weights are there to read it from.
SHIPPED_BUDGET = {"data": "data/train", "val_data": "data/val", "batch_size": 64, "max_iters": 12000,
                  "eval_interval": 1000, "eval_scenes": 500, "threads": 2}
BUDGET_KEYS = ("data", "val_data", "counts", "batch_size", "max_iters", "lr", "min_lr", "warmup_iters",
               "eval_interval", "eval_scenes", "threads", "channels", "hidden", "seed")

# DAIR trains on teacher-forced canvases rendered once, with pose jitter (``training.dair_canvas``;
# measured with 3000 iterations on 0..2 objects: best validation count 85.0% with it, 81.6% without;
# on 3 objects 97.0% and 95.0%). Its command makes them from the training data first (a no-op when
# they are there).
DAIR_JITTER_CM, DAIR_JITTER_DEG = 0.25, 2.0

def leaked(truth: SceneBatch, data_dir: str | Path) -> int | None:
    """How many held-out scenes with objects appear in a training set (same first object's
    exact x, y); None when the set is not on disk."""
    path = Path(data_dir) / "position.npy"
    if not path.exists():
        return None
    seen = set(map(tuple, np.asarray(np.load(path, mmap_mode="r")[:, 0, :2], dtype=np.float32).tolist()))
    mine = truth.position[truth.present[:, 0], 0, :2].numpy().astype(np.float32).tolist()
    return sum(tuple(xy) in seen for xy in mine)


# ---- methods ----------------------------------------------------------------------------------
@dataclass
class Method:
    """One row of a report.

    name: row label. predict: images -> scenes, or None when not trained.
    command: how to train it (printed when not trained). note: weights, budget, settings.
    batch: images per ``predict`` call in the accuracy (batched) pass.
    scenes: score only the first K held-out scenes (None = all): for the costly methods.
    timing_images: single images timed at batch 1 (median).
    warmup: call once on one image before timing (networks: first-call costs are a large part
        of a millisecond; render-and-compare takes seconds per image, so it is not warmed up).
    family: rows of one family are joined by a line in the plot (render-and-compare budgets).
    """

    name: str
    predict: Predict | None
    command: str = ""
    note: str = ""
    batch: int = 64
    scenes: int | None = None
    timing_images: int = 20
    warmup: bool = True
    family: str = ""


@dataclass
class Result:
    """A method's answers and timings. pred: SceneBatch of the scored scenes (None when not
    trained). ms_batch1 / ms_batched: median / mean wall-clock ms per image."""

    method: Method
    pred: SceneBatch | None = None
    summary: dict | None = None
    ms_batch1: float = math.nan
    ms_batched: float = math.nan
    extra: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.summary is not None


def supervised_predict(model, world: World) -> Predict:
    return lambda images: to_scene(predict_slots(model, images), world)


def load_model(path: str | Path, kind: str):
    """(model, world, meta) from weights, or None when the file is missing. kind: air | supervised."""
    if not Path(path).exists():
        return None
    return load_supervised(path) if kind == "supervised" else load_weights(path)


def check_world(name: str, got: World, want: World) -> None:
    if got != want:
        raise ValueError(f"{name} was trained for another world than the held-out scenes' "
                         f"(max_objects {got.max_objects} vs {want.max_objects}, image_size "
                         f"{got.image_size} vs {want.image_size}, ...)")


def budget_note(meta: dict) -> str:
    """'18000 it x 64 on data/train (best at 17000)' from weights metadata, or '' if unknown."""
    t = meta.get("train") or {}
    if not t:
        return ""
    best = f", best at it {meta['iter']}" if "iter" in meta else ""
    counts = f" (counts {t['counts']})" if t.get("counts") else ""
    c = meta.get("dair_canvas")
    canvas = f", canvases jittered {c['jitter_cm']} cm / {c['jitter_deg']} deg" if c else ""
    return f"{t.get('max_iters')} it x batch {t.get('batch_size')} on {t.get('data')}{counts}{canvas}{best}"


def train_command(objective: str, out_dir: str, export: str, dair: bool = False,
                  budget: dict | None = None) -> str:
    """The ``python -m training.train`` line with the given budget (default: the shipped one)."""
    b = {**SHIPPED_BUDGET, **{k: v for k, v in (budget or {}).items() if k in BUDGET_KEYS}}
    flags = [f"--objective={objective}"] + (["--dair=True"] if dair else [])
    flags += [f"--{k}={b[k]}" for k in BUDGET_KEYS if k in b]
    prefix = ""
    if dair:
        canvas = f"{b['data']}-canvas-j{round(DAIR_JITTER_CM * 100)}"
        prefix = (f"python -m training.dair_canvas --data={b['data']} --out={canvas} --jitter_cm={DAIR_JITTER_CM} "
                  f"--jitter_deg={DAIR_JITTER_DEG} && ")
        flags.append(f"--dair_canvas={canvas}")
    flags += [f"--out_dir={out_dir}", f"--export={export}"]
    return prefix + "python -m training.train " + " ".join(flags)


# ---- scoring and timing -----------------------------------------------------------------------
def run_method(method: Method, images: torch.Tensor, truth: SceneBatch, world: World) -> Result:
    """Batch-1 timing (single images, after a warm-up call), then the batched pass that is
    scored and timed."""
    if method.predict is None:
        return Result(method)
    n = images.shape[0] if method.scenes is None else min(method.scenes, images.shape[0])
    if method.warmup:
        method.predict(images[:1])  # caches, allocator, lazy init
    one = []
    for i in range(min(method.timing_images, n)):
        t = time.perf_counter()
        method.predict(images[i : i + 1])
        one.append((time.perf_counter() - t) * 1000)
    spent = 0.0

    def timed(x: torch.Tensor) -> SceneBatch:
        nonlocal spent
        t = time.perf_counter()
        out = method.predict(x)
        spent += time.perf_counter() - t
        return out

    summary, pred = evaluate(timed, images[:n], truth.select(slice(0, n)), world, batch=method.batch)
    return Result(method, pred, summary, statistics.median(one) if one else math.nan, spent * 1000 / max(n, 1))


def score_first(result: Result, truth: SceneBatch, world: World, first: int) -> dict:
    """Metrics summary of a result on its first ``first`` scenes."""
    n = min(first, result.pred.batch_size)
    return score(result.pred.select(slice(0, n)), truth.select(slice(0, n)), world)


def count_ci(p: float, n: int) -> float:
    """Half-width of the normal-approximation 95% interval of an accuracy p over n scenes."""
    return 1.96 * math.sqrt(max(p * (1 - p), 0.0) / n) if n else math.nan


def metric_cells(summary: dict) -> list[str]:
    """count (± 95%), shape, colour, position median, p90, yaw median."""
    f = lambda x, fmt: "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)  # noqa: E731
    ca = summary["count_accuracy"]
    return [f"{f(ca * 100, '.1f')} ± {f(count_ci(ca, summary['scenes']) * 100, '.1f')}",
            f(summary["shape_accuracy"] * 100, ".1f"), f(summary["color_accuracy"] * 100, ".1f"),
            f(summary["position_error_cm"]["median"], ".2f"), f(summary["position_error_cm"]["p90"], ".2f"),
            f(summary["yaw_error_deg"]["median"], ".1f")]


def fmt_ms(ms: float) -> str:
    if math.isnan(ms):
        return "–"
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=False).stdout.strip()
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
