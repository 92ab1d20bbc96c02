"""Train the AIR inference network.

    python -m training.train --objective=amortised --out_dir=runs/air
    python -m training.train --objective=amortised --out_dir=runs/air --resume=True
    python -m training.train --objective=elbo --init_from=runs/air/ckpt.pt --out_dir=runs/air-elbo
    python -m training.train --objective=amortised --dair=True --out_dir=runs/dair
    python -m training.train --objective=supervised --out_dir=runs/supervised

``--dair=True`` trains difference AIR: each step also sees the image minus a rendering of the
true objects in earlier slots (``objectives.dair_residuals``). ``--objective=supervised`` trains
the fixed-slot counterpart (``experiments.supervised``) on the same data with the same loop;
``channels`` and ``hidden`` then size its encoder and head.

Every field of ``TrainConfig`` can be set as ``--key=value`` (the type must parse; an unknown
key is an error). The run writes ``OUT_DIR/config.json``, ``OUT_DIR/log.csv`` (one row per
log interval, plus evaluation columns) and ``OUT_DIR/ckpt.pt`` (latest) / ``best.pt`` (best
validation count accuracy, then loss). ``--resume=True`` continues from ``ckpt.pt``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.checkpoint import save_weights
from training.dair_canvas import CanvasStore
from inference.metrics import add_batch, scores_for
from inference.network import AIR, AIRConfig, table_anchor
from training.objectives import amortised_loss, dair_residuals, nearest_first
from inference.infer import infer, to_scene
from inference.preprocess import batch_from_uint8
from experiments.supervised import SupervisedConfig, SupervisedNet, predict, save_supervised, supervised_loss
from renderer.dataset import SceneDataset
from renderer.world import World


# ---------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Training settings; each is a ``--key=value`` flag."""

    objective: str = "amortised"  # amortised | elbo | supervised (fixed-slot baseline, experiments.supervised)
    data: str = "data/train"  # rendered dataset (python -m renderer.dataset)
    val_data: str = "data/val"  # held-out rendered dataset for evaluation
    out_dir: str = "runs/air"  # checkpoints and logs
    resume: bool = False  # continue from out_dir/ckpt.pt
    init_from: str = ""  # start the model from this checkpoint (e.g. amortised -> elbo)
    export: str = ""  # when done, write the best model here as .safetensors + .json
    seed: int = 0
    batch_size: int = 64
    max_iters: int = 20000
    lr: float = 1e-3  # peak learning rate (Adam), cosine decay to min_lr
    min_lr: float = 2e-5
    warmup_iters: int = 200
    grad_clip: float = 5.0
    log_interval: int = 50
    eval_interval: int = 1000
    eval_scenes: int = 1000
    threads: int = 2  # torch CPU threads
    dair: bool = False  # difference AIR
    dair_canvas: str = ""  # DAIR: read the teacher-forced residuals' canvases from here (python -m
    # training.dair_canvas, made from --data; may carry pose jitter) instead of rendering them per batch
    channels: int = 64  # AIRConfig.channels
    hidden: int = 256  # AIRConfig.hidden
    attention_weight: float = 1.0  # amortised and supervised: weight of the attention target (0 = off)
    slot_attention: bool = True  # supervised: each slot reads the image by attention (SupervisedConfig)
    anchor_where: bool = False  # AIR: position = table point under the attention centroid + a 5 cm-scale offset
    bound_position: bool = False  # AIR: squash the mean position into the prior's placement square
    # --- elbo only ---
    likelihood_scale: float = 0.1  # std of the Gaussian pixel likelihood
    baseline_lr: float = 3e-3  # NVIL baseline learning rate (larger than the model's)
    pres_prior_start: float = 0.99  # presence prior p(z_pres = 1), annealed to the truncated-uniform count prior
    pres_anneal_iters: int = 2000
    pres_prior_end: float = 0.0  # > 0: anneal to this p(z_pres = 1) per step instead (AIR's sparsity prior:
    # an object must explain this many nats more than log(1/p) to be worth it, so duplicates go)
    pres_warmup_iters: int = 0  # first iterations with every step forced present (no presence training)
    elbo_blur_px: float = 0.5  # soft-renderer edge blur in the likelihood (wider: longer-range gradients)
    elbo_image_blur_px: float = 0.0  # Gaussian blur of image and rendering in the likelihood at the start ...
    elbo_image_blur_iters: int = 1000  # ... annealed linearly to none over these iterations (coarse to fine)
    elbo_relax_color_iters: int = 0  # first iterations render the q-mean colour instead of drawing one
    elbo_samples: int = 1  # samples of q per image
    max_elbo_images: int = 0  # use only the first K images of data (0 = all)
    counts: str = ""  # train and evaluate only on scenes with these object counts, e.g. "0,1,2" (empty: all)


OBJECTIVES = ("amortised", "elbo", "supervised")


def parse_overrides(argv: list[str]) -> TrainConfig:
    """``--key=value`` (or ``--key value``) flags -> TrainConfig; types are checked."""
    cfg = TrainConfig()
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ValueError(f"expected --key=value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if not args:
                raise ValueError(f"--{key} needs a value")
            value = args.pop(0)
        if key not in types:
            raise ValueError(f"unknown setting --{key}; known: {sorted(types)}")
        typ = types[key]
        if typ is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--{key} must be true or false, got {value!r}")
            setattr(cfg, key, value.lower() in ("true", "1"))
        else:
            try:
                setattr(cfg, key, typ(value))
            except ValueError:
                raise ValueError(f"--{key} must be {typ.__name__}, got {value!r}") from None
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"--objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if cfg.objective == "supervised" and cfg.dair:
        raise ValueError("--dair applies to AIR objectives, not --objective=supervised")
    if cfg.dair_canvas and not (cfg.dair and cfg.objective == "amortised"):
        raise ValueError("--dair_canvas applies to --objective=amortised --dair=True only")
    return cfg


def same_architecture(a, b) -> bool:
    """Two model configs equal up to rounding in their fitted float fields (AIR's anchor)."""
    da, db = a.to_dict(), b.to_dict()
    anchors = [np.asarray(d.pop("anchor", ()), dtype=float) for d in (da, db)]
    return da == db and anchors[0].shape == anchors[1].shape and np.allclose(*anchors, atol=1e-6)


def get_lr(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up, then cosine decay to min_lr at max_iters."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / cfg.warmup_iters
    frac = min(1.0, (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (cfg.lr - cfg.min_lr)


def scene_pool(data: SceneDataset, counts: str, limit: int = 0) -> np.ndarray:
    """Indices of the written scenes (the first ``limit`` if > 0) whose object count is in
    ``counts`` ("0,1,2"; empty: every count)."""
    n = len(data) if limit <= 0 else min(limit, len(data))
    if not counts:
        return np.arange(n)
    wanted = [int(c) for c in counts.split(",")]
    have = np.asarray(data.latents["present"][:n]).sum(axis=1)
    pool = np.flatnonzero(np.isin(have, wanted))
    if len(pool) == 0:
        raise SystemExit(f"{data.root} has no scenes with {counts} objects")
    return pool


def evaluate(model: AIR | SupervisedNet, world: World, data: SceneDataset, scenes: int, batch: int = 250,
             index: np.ndarray | None = None) -> dict:
    """Greedy inference on the first ``scenes`` held-out images (of ``index``, if given); the
    metrics summary. (A supervised model has no steps: it decides every slot at once; its
    mean_steps is N.)"""
    scores = scores_for(world)
    steps = []
    chosen = (np.arange(len(data)) if index is None else index)[:scenes]
    for lo in range(0, len(chosen), batch):
        sel = chosen[lo : lo + batch]
        images = batch_from_uint8(data.images[sel])
        if isinstance(model, SupervisedNet):
            objects = predict(model, images)
            steps.append(torch.full((len(sel),), float(model.config.slots)))
        else:
            result = infer(model, images, world)
            objects = result.objects
            steps.append(result.steps.float())
        add_batch(scores, to_scene(objects, world), data.scenes(sel))
    summary = scores.summary()
    summary["mean_steps"] = float(torch.cat(steps).mean())
    model.train()
    return summary


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    cfg = parse_overrides(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out_dir)
    ckpt_path = out / "ckpt.pt"
    if out.exists() and (out / "log.csv").exists() and not cfg.resume:
        raise SystemExit(f"{out} already holds a run: pass --resume=True or choose another --out_dir")
    out.mkdir(parents=True, exist_ok=True)

    # data
    train = SceneDataset.open(cfg.data)
    val = SceneDataset.open(cfg.val_data)
    world = train.world
    pool, seen = scene_pool(train, cfg.counts, cfg.max_elbo_images), len(train)
    val_pool = scene_pool(val, cfg.counts)
    canvases = CanvasStore.open(cfg.dair_canvas, train) if cfg.dair_canvas else None

    # model + optimiser (resume / init_from / scratch)
    supervised = cfg.objective == "supervised"
    config_cls, net_cls = (SupervisedConfig, SupervisedNet) if supervised else (AIRConfig, AIR)
    if supervised:
        model_cfg = SupervisedConfig.for_world(world, channels=cfg.channels, hidden=cfg.hidden,
                                               slot_attention=cfg.slot_attention)
    else:
        anchored = dict(anchor=table_anchor(world), position_scale=0.05) if cfg.anchor_where else {}
        if cfg.bound_position:
            anchored["position_bound"] = world.placement_half_extent
        model_cfg = AIRConfig.for_world(world, dair=cfg.dair, channels=cfg.channels, hidden=cfg.hidden, **anchored)
    start, best = 0, (-1.0, math.inf)
    state = None
    if cfg.resume:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model_cfg = config_cls.from_dict(state["model_args"])  # architecture comes from the checkpoint
    model = net_cls(model_cfg)
    if cfg.objective == "elbo":
        from training.elbo import ELBOTrainer

        trainer = ELBOTrainer(model, world, cfg)
        optimizer = trainer.optimizer
    else:
        trainer = None
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if trainer is not None and "baseline" in state:
            trainer.baseline.load_state_dict(state["baseline"])
        start, best = state["iter_num"], tuple(state["best"])
        rng = np.random.default_rng([cfg.seed, start])
        torch.manual_seed(cfg.seed + start)
    elif cfg.init_from:
        init = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
        init_cfg = config_cls.from_dict(init["model_args"])
        if not same_architecture(init_cfg, model_cfg):
            raise SystemExit(f"--init_from {cfg.init_from} has another architecture: {init['model_args']}")
        model_cfg = init_cfg
        model.load_state_dict(init["model"])
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), ("supervised" if supervised else "air"):
                                                 model_cfg.to_dict()}, indent=1))

    def save(path: Path, it: int) -> None:
        doc = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_args": model_cfg.to_dict(),
               "iter_num": it, "best": list(best), "config": asdict(cfg), "world": world.to_dict()}
        if trainer is not None:
            doc["baseline"] = trainer.baseline.state_dict()
        torch.save(doc, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    log_file = (out / "log.csv").open("a", newline="")
    log = csv.writer(log_file)
    if start == 0:
        log.writerow(["iter", "time_s", "lr", "loss", "terms", "count_accuracy", "shape_accuracy",
                      "color_accuracy", "position_median_cm", "yaw_median_deg", "mean_steps"])

    # loop
    model.train()
    t0 = time.time()
    running: dict[str, float] = {}
    bar = tqdm(range(start, cfg.max_iters), initial=start, total=cfg.max_iters, desc=cfg.objective)
    for it in bar:
        lr = get_lr(cfg, it)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        idx = np.sort(pool[rng.choice(len(pool), cfg.batch_size, replace=False)])
        images = batch_from_uint8(train.images[idx])
        if trainer is None:
            scene = train.scenes(idx)
            if supervised:
                loss, stats = supervised_loss(model, images, scene, world, attention_weight=cfg.attention_weight)
            else:
                residuals = None
                if model_cfg.dair:
                    scene = nearest_first(scene)
                    residuals = (canvases.residuals(images, idx) if canvases is not None
                                 else dair_residuals(images, scene, world))
                loss, stats = amortised_loss(model, images, scene, world, residuals=residuals,
                                             attention_weight=cfg.attention_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
        else:
            stats = trainer.train_step(images, it)
        for k, v in stats.items():
            running[k] = running.get(k, 0.0) + v
        last = it + 1 == cfg.max_iters
        if (it + 1) % cfg.log_interval == 0 or last:
            if cfg.max_elbo_images <= 0 and canvases is None and train.refresh() > seen:  # still rendering
                pool, seen = scene_pool(train, cfg.counts), len(train)
            avg = {k: v / cfg.log_interval for k, v in running.items()}
            running = {}
            row = [it + 1, round(time.time() - t0, 1), lr, avg.get("loss", math.nan),
                   json.dumps({k: round(v, 4) for k, v in avg.items()})]
            if (it + 1) % cfg.eval_interval == 0 or last:
                ev = evaluate(model, world, val, cfg.eval_scenes, index=val_pool)
                row += [ev["count_accuracy"], ev["shape_accuracy"], ev["color_accuracy"],
                        ev["position_error_cm"]["median"], ev["yaw_error_deg"]["median"], ev["mean_steps"]]
                key = (ev["count_accuracy"], -avg.get("loss", math.inf))
                if key > (best[0], -best[1]):
                    best = (ev["count_accuracy"], avg.get("loss", math.inf))
                    save(out / "best.pt", it + 1)
                tqdm.write(f"iter {it + 1}: count {ev['count_accuracy']:.3f} shape {ev['shape_accuracy']:.3f} "
                           f"color {ev['color_accuracy']:.3f} pos {ev['position_error_cm']['median']:.2f}cm "
                           f"yaw {ev['yaw_error_deg']['median']:.1f}deg")
                save(ckpt_path, it + 1)
            log.writerow(row)
            log_file.flush()
            bar.set_postfix(loss=f"{avg.get('loss', math.nan):.3f}")
    save(ckpt_path, cfg.max_iters)
    log_file.close()
    if cfg.export:
        best_state = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(best_state["model"])
        export = save_supervised if supervised else save_weights
        extra = {"dair_canvas": {k: v for k, v in canvases.meta.items() if k != "world"}} if canvases else {}
        export(model, world, cfg.export, {"train": asdict(cfg), "iter": best_state["iter_num"], **extra})
        print(f"exported {cfg.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
