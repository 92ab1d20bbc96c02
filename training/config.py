"""The training settings of the product network: one documented dataclass.

Every field is a ``--key=value`` flag of ``python -m training.train`` and a plain assignment in a
recipe file (``training/recipes/*.py``). The research knobs (ELBO, anchored positions, the
supervised counterpart's read-out, restricted object counts) extend it in
``experiments.config.ResearchConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def setting(default: Any, doc: str) -> Any:
    """A config field with its documentation (shown by ``--help``)."""
    return field(default=default, metadata={"doc": doc})


def documentation(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, doc) of every field of a config dataclass, in order."""
    return [(f.name, f.default, f.metadata.get("doc", "")) for f in fields(cls)]


@dataclass
class TrainConfig:
    """What a training run does and where; the model's size. Defaults: the shipped AIR's recipe
    apart from ``max_iters`` and ``eval_scenes`` (``training/recipes/air.py`` sets them)."""

    objective: str = setting("amortised", "amortised (maximum likelihood on prior samples, the product), "
                                          "elbo (unlabelled images, training/elbo.py) or supervised (the "
                                          "fixed-slot counterpart, experiments/supervised.py)")
    data: str = setting("data/train", "rendered training dataset (python -m renderer.dataset)")
    val_data: str = setting("data/val", "held-out rendered dataset scored every eval_interval")
    out_dir: str = setting("runs/air", "where config.json, log.csv, ckpt.pt (latest) and best.pt go")
    resume: bool = setting(False, "continue from out_dir/ckpt.pt (its architecture wins)")
    init_from: str = setting("", "start the model from this checkpoint (same architecture), e.g. amortised -> elbo")
    warm_start: str = setting("", "copy the tensors that fit from these .safetensors weights (e.g. a fixed-camera "
                                  "network into a view network: training.train.warm_start)")
    export: str = setting("", "when done, write best.pt's model here as .safetensors + .json")
    seed: int = setting(0, "seed of the model's initialisation and of the batch draws")
    batch_size: int = setting(64, "scenes per optimiser step")
    max_iters: int = setting(20000, "optimiser steps")
    lr: float = setting(1e-3, "peak learning rate (Adam), after warm-up; cosine decay to min_lr at max_iters")
    min_lr: float = setting(2e-5, "learning rate at max_iters")
    warmup_iters: int = setting(200, "steps of linear learning-rate warm-up from 0")
    schedule_from: int = setting(0, "iteration at which the learning-rate schedule (warm-up, cosine) starts: a "
                                    "recipe that continues a run resumed at this iteration (the run must have "
                                    "reached it; training refuses otherwise)")
    grad_clip: float = setting(5.0, "largest gradient norm of the model's parameters")
    log_interval: int = setting(50, "steps per row of log.csv (means of the loss terms)")
    eval_interval: int = setting(1000, "steps between validation runs (and ckpt.pt / best.pt saves)")
    eval_scenes: int = setting(1000, "validation scenes scored per run (the first of val_data)")
    threads: int = setting(2, "torch CPU threads")
    device: str = setting("cpu", "where the network and the renderer run: 'cpu', 'cuda' or 'cuda:N' (the data "
                                 "is read on the CPU and moved per batch)")
    train_scenes: int = setting(0, "train on the first K scenes of data only (0 = all; any objective)")
    dair: bool = setting(False, "difference AIR: each step also sees the image minus a rendering of the "
                                "objects found so far (AIRConfig.dair)")
    dair_canvas: str = setting("", "DAIR: read the teacher-forced residuals' canvases from here "
                                   "(python -m training.dair_canvas, made from data) instead of rendering them")
    channels: int = setting(64, "width of the CNN feature map (AIRConfig.channels)")
    hidden: int = setting(256, "LSTM state size (AIRConfig.hidden); the supervised head's width")
    attention_weight: float = setting(1.0, "weight of the auxiliary attention target (amortised, supervised; 0 = off)")
