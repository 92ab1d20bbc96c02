"""Train the AIR inference network (or a research variant), top to bottom.

    python -m training.train training/recipes/air.py                     # the shipped model's recipe
    python -m training.train training/recipes/air.py --max_iters=200 --out_dir=runs/try
    python -m training.train training/recipes/air.py --resume=True       # continue runs/air
    python -m training.train --help                                     # every setting, documented

Settings: ``training.config.TrainConfig`` (the product's) extended by
``experiments.config.ResearchConfig`` (the research knobs). A recipe is a Python file of plain
assignments (``max_iters = 12000``); ``--key=value`` flags come after it and win. Each value must
have its default's type and each key must be a setting, else the run stops with a one-line error.

The run writes ``OUT_DIR/config.json``, ``OUT_DIR/log.csv`` (one row per log interval, plus
evaluation columns) and ``OUT_DIR/ckpt.pt`` (latest) / ``best.pt`` (best validation count x
shape x colour accuracy, then loss): plain dicts of model, optimiser, model_args, iter_num, best, config, world
and, with ``--average_from``, the running weight mean (``inference.averaging``) that validation
and export then use.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from experiments.anchored import AnchoredAIR, AnchoredAIRConfig, table_anchor
from experiments.config import ResearchConfig
from experiments.supervised import Supervised, SupervisedConfig, SupervisedNet
from inference.averaging import WeightMean, model_weights
from inference.evaluate import evaluate
from inference.network import AIR, AIRConfig
from inference.preprocess import batch_from_uint8
from inference.views import NUM_CAMERA_FEATURES, ViewInput, dataset_views
from renderer.dataset import SceneDataset
from renderer.world import World
from training.config import documentation
from training.dair_canvas import CanvasStore
from training.elbo import ELBO
from training.objectives import Amortised, Objective

OBJECTIVES = ("amortised", "elbo", "supervised")
NETWORKS = {AIRConfig: AIR, AnchoredAIRConfig: AnchoredAIR, SupervisedConfig: SupervisedNet}
LOG_COLUMNS = ["iter", "time_s", "lr", "loss", "terms", "count_accuracy", "shape_accuracy", "color_accuracy",
               "position_median_cm", "yaw_median_deg", "mean_steps"]


# ---- configuration ----------------------------------------------------------------------------
class ConfigError(ValueError):
    """A setting that does not exist, does not parse, or does not fit the others."""


def _typed(key: str, value: object, typ: type) -> object:
    """``value`` (a recipe's Python value or a flag's text) as the setting's type ``typ``."""
    if isinstance(value, str) and typ is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"--{key} must be true or false, got {value!r}")
        return value.lower() in ("true", "1")
    if isinstance(value, str) and typ is not str:
        try:
            return typ(value)
        except ValueError:
            raise ConfigError(f"--{key} must be {typ.__name__}, got {value!r}") from None
    if typ is float and type(value) is int:
        return float(value)
    if type(value) is not typ:
        raise ConfigError(f"{key} must be {typ.__name__}, got {value!r}")
    return value


def read_recipe(path: str) -> dict[str, object]:
    """A recipe file's assignments (names starting with ``_`` and modules are left out)."""
    if not Path(path).is_file():
        raise ConfigError(f"recipe {path} does not exist")
    scope: dict[str, object] = {}
    exec(compile(Path(path).read_text(), path, "exec"), scope)  # noqa: S102 - a recipe is our own config file
    return {k: v for k, v in scope.items() if not k.startswith("_") and not isinstance(v, type(sys))}


def parse_config(argv: list[str]) -> ResearchConfig:
    """Recipe files, then ``--key=value`` (or ``--key value``) flags -> the config; checked."""
    cfg = ResearchConfig()
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    settings: list[tuple[str, object]] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            settings += list(read_recipe(arg).items())
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if not args:
                raise ConfigError(f"--{key} needs a value")
            value = args.pop(0)
        settings.append((key, value))
    for key, value in settings:
        if key not in types:
            raise ConfigError(f"unknown setting {key!r} (python -m training.train --help lists them)")
        setattr(cfg, key, _typed(key, value, types[key]))
    check(cfg)
    return cfg


def check(cfg: ResearchConfig) -> None:
    """Settings that do not fit together."""
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if cfg.objective == "supervised" and (cfg.dair or cfg.anchor_where):
        raise ConfigError("dair and anchor_where apply to AIR objectives, not objective=supervised")
    if cfg.dair_canvas and not (cfg.dair and cfg.objective == "amortised"):
        raise ConfigError("dair_canvas applies to objective=amortised with dair=True only")
    if not 0 <= cfg.schedule_from < cfg.max_iters:
        raise ConfigError(f"schedule_from must be in [0, max_iters={cfg.max_iters}), got {cfg.schedule_from}")
    if not 0 <= cfg.average_from < cfg.max_iters or cfg.average_every < 1:
        raise ConfigError(f"average_from must be in [0, max_iters={cfg.max_iters}) and average_every >= 1, got "
                          f"{cfg.average_from} and {cfg.average_every}")
    if cfg.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", cfg.device):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}")
    if cfg.device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but torch sees no CUDA device (use device=cpu)")


def usage() -> str:
    lines = [__doc__.strip(), "", "settings (default: meaning):"]
    for name, default, doc in documentation(ResearchConfig):
        lines.append(f"  --{name}={default!s}: {doc}")
    return "\n".join(lines)


# ---- pieces the loop uses ---------------------------------------------------------------------
def get_lr(cfg: ResearchConfig, it: int) -> float:
    """Linear warm-up, then cosine decay to min_lr at max_iters; both counted from
    ``schedule_from`` (a stage that continues a run)."""
    step, span = it - cfg.schedule_from, cfg.max_iters - cfg.schedule_from
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    frac = min(1.0, (step - cfg.warmup_iters) / max(1, span - cfg.warmup_iters))
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
        raise ConfigError(f"{data.root} has no scenes with {counts} objects")
    return pool


def images_of(data: SceneDataset, index: np.ndarray, world: World) -> torch.Tensor | ViewInput:
    """A batch of a dataset's images as the network reads them: the image tensor, or, for a
    photo dataset, its views with coverage and camera features (``inference.views``)."""
    return dataset_views(data, index, world) if data.has_cameras else batch_from_uint8(data.images[index])


def selection_score(ev: dict) -> float:
    """What picks best.pt on the validation set: count, shape and colour accuracy multiplied, so
    that a checkpoint that counts as well but names shapes better wins (count alone saturates
    near 98% while shape still moves)."""
    score = ev["count_accuracy"] * ev["shape_accuracy"] * ev["color_accuracy"]
    return 0.0 if math.isnan(score) else score  # nan: no object was matched (a count of 0 everywhere)


def warm_start(model: AIR, path: str) -> str:
    """Copy from the weights at ``path`` every tensor whose shape fits; for a view_inputs model
    started from a fixed-camera one, also the columns the two share of the first convolution
    (RGB and coordinate planes) and of the core's input (pooled features, latents, explained
    features). The where head stays fresh when the inputs differ: its outputs mean another thing
    in the view. From a network of the same inputs (a view network trained on) every tensor is copied.
    Returns a one-line summary."""
    old = load_file(path, device="cpu")
    new = model.state_dict()
    feat = model.config.channels + 2
    copied = 0
    same_inputs = old["encoder.down.0.weight"].shape == new["encoder.down.0.weight"].shape
    for name, t in new.items():
        src = old.get(name)
        if src is None or (name.startswith("out_where") and not same_inputs):
            continue
        if src.shape == t.shape:
            new[name] = src.clone()
        elif name == "encoder.down.0.weight" and src.shape[1] == 5:  # [rgb, u, v] -> [rgb, extra..., u, v]
            new[name] = torch.zeros_like(t)
            new[name][:, :3], new[name][:, -2:] = src[:, :3], src[:, 3:]
        elif name == "core.weight_ih" and t.shape[1] - src.shape[1] == NUM_CAMERA_FEATURES:
            new[name] = torch.zeros_like(t)
            new[name][:, :feat], new[name][:, feat + NUM_CAMERA_FEATURES:] = src[:, :feat], src[:, feat:]
        else:
            continue
        copied += 1
    model.load_state_dict(new)
    return f"warm start from {path}: {copied} of {len(new)} tensors"


def model_config(cfg: ResearchConfig, world: World, views: bool = False) -> AIRConfig | SupervisedConfig:
    """The architecture a fresh run builds (``views``: a view_inputs network, for photo data)."""
    size = dict(channels=cfg.channels, hidden=cfg.hidden)
    if cfg.objective == "supervised":
        return SupervisedConfig.for_world(world, slot_attention=cfg.slot_attention, **size)
    if cfg.anchor_where or cfg.bound_position:
        anchored = dict(anchor=table_anchor(world), position_scale=0.05) if cfg.anchor_where else {}
        bound = world.placement_half_extent if cfg.bound_position else 0.0
        return AnchoredAIRConfig.for_world(world, dair=cfg.dair, position_bound=bound, shape_positions=cfg.shape_positions,
                                           **anchored, **size)
    return AIRConfig.for_world(world, dair=cfg.dair, view_inputs=views, shape_positions=cfg.shape_positions, **size)


def make_objective(cfg: ResearchConfig, model: torch.nn.Module, world: World, train: SceneDataset) -> Objective:
    if cfg.objective == "supervised":
        return Supervised(model, world, cfg.attention_weight)
    if cfg.objective == "elbo":
        return ELBO(model, world, cfg)
    canvases = CanvasStore.open(cfg.dair_canvas, train) if cfg.dair_canvas else None
    return Amortised(model, world, cfg.attention_weight, canvases)


def same_architecture(a, b) -> bool:
    """Two model configs equal up to rounding in their fitted float fields (the anchor)."""
    da, db = a.to_dict(), b.to_dict()
    anchors = [np.asarray(d.pop("anchor", ()), dtype=float) for d in (da, db)]
    return da == db and anchors[0].shape == anchors[1].shape and np.allclose(*anchors, atol=1e-6)


def save(path: Path, objective: Objective, optimizer, cfg: ResearchConfig, it: int, best: tuple,
         mean: WeightMean | None) -> None:
    """A checkpoint: a plain dict, written atomically."""
    doc = {"model": objective.model.state_dict(), "optimizer": optimizer.state_dict(),
           "model_args": objective.model.config.to_dict(), "iter_num": it, "best": list(best),
           "config": asdict(cfg), "world": objective.world.to_dict(), **objective.state()}
    if mean is not None:
        doc["weight_mean"] = mean.state()
    torch.save(doc, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


# ---- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(usage())
        return 0
    try:
        cfg = parse_config(argv)
        return run(cfg)
    except (ConfigError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(cfg: ResearchConfig) -> int:
    # setup
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out_dir)
    if (out / "log.csv").exists() and not cfg.resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume=True or choose another --out_dir")
    state = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False) if cfg.resume else None
    reached = state["iter_num"] if state is not None else 0
    if reached < cfg.schedule_from:
        raise ConfigError(f"this stage's schedule starts at iteration {cfg.schedule_from}, but {out} is at "
                          f"{reached}: train the stage before it first, then resume it (--resume=True)")
    out.mkdir(parents=True, exist_ok=True)

    # data
    train, val = SceneDataset.open(cfg.data), SceneDataset.open(cfg.val_data)
    world = train.world
    pool, seen = scene_pool(train, cfg.counts, cfg.train_scenes), len(train)
    val_index = scene_pool(val, cfg.counts)[: cfg.eval_scenes]
    val_images, val_truth = images_of(val, val_index, world).to(device), val.scenes(val_index).to(device)

    # model: scratch, resume or init_from
    model_cfg = model_config(cfg, world, views=train.has_cameras)
    if state is not None:
        model_cfg = type(model_cfg).from_dict(state["model_args"])  # the checkpoint's architecture wins
    model = NETWORKS[type(model_cfg)](model_cfg)
    objective = make_objective(cfg, model, world, train).to(device)

    # optimiser
    optimizer = torch.optim.Adam(objective.param_groups(), lr=cfg.lr)
    start, best = 0, (-1.0, math.inf)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # its moments follow the parameters' device
        objective.load_state(state)
        start, best = state["iter_num"], tuple(state["best"])
        if not (out / "best.pt").exists():  # a folder put together without its best.pt: the next validation writes one
            best = (-1.0, math.inf)
        rng = np.random.default_rng([cfg.seed, start])
        torch.manual_seed(cfg.seed + start)
    elif cfg.init_from:
        init = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
        if not same_architecture(type(model_cfg).from_dict(init["model_args"]), model_cfg):
            raise ConfigError(f"init_from {cfg.init_from} has another architecture: {init['model_args']}")
        model.load_state_dict(init["model"])
    elif cfg.warm_start:
        print(warm_start(model, cfg.warm_start))
    mean = WeightMean(model) if cfg.average_from > 0 else None
    if mean is not None and state is not None and state.get("weight_mean"):
        mean.load(state["weight_mean"])
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), objective.kind: model_cfg.to_dict()},
                                                indent=1))

    # eval: the one evaluation function, on the first eval_scenes validation scenes
    def validate() -> dict:
        model.eval()
        with mean.applied(model) if mean is not None and mean.count else nullcontext():
            summary, _ = evaluate(objective.predict, val_images, val_truth, world)
        model.train()
        return summary

    # loop
    log_file = (out / "log.csv").open("a", newline="")
    log = csv.writer(log_file)
    if start == 0:
        log.writerow(LOG_COLUMNS)
    model.train()
    t0, running = time.time(), {}
    bar = tqdm(range(start, cfg.max_iters), initial=start, total=cfg.max_iters, desc=cfg.objective)
    for it in bar:
        lr = get_lr(cfg, it)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        idx = np.sort(pool[rng.choice(len(pool), cfg.batch_size, replace=False)])
        loss, stats = objective.loss(images_of(train, idx, world).to(device), train.scenes(idx).to(device), idx, it)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if mean is not None and it + 1 > cfg.average_from and (it + 1 - cfg.average_from) % cfg.average_every == 0:
            mean.add(model)
        for k, v in stats.items():
            running[k] = running.get(k, 0.0) + v
        last = it + 1 == cfg.max_iters
        if (it + 1) % cfg.log_interval and not last:
            continue
        if cfg.train_scenes <= 0 and not cfg.dair_canvas and train.refresh() > seen:  # data still being rendered
            pool, seen = scene_pool(train, cfg.counts), len(train)
        avg, running = {k: v / cfg.log_interval for k, v in running.items()}, {}
        row = [it + 1, round(time.time() - t0, 1), lr, avg.get("loss", math.nan),
               json.dumps({k: round(v, 4) for k, v in avg.items()})]
        if (it + 1) % cfg.eval_interval == 0 or last:
            ev = validate()
            row += [ev["count_accuracy"], ev["shape_accuracy"], ev["color_accuracy"],
                    ev["position_error_cm"]["median"], ev["yaw_error_deg"]["median"], ev["mean_steps"]]
            if (selection_score(ev), -avg.get("loss", math.inf)) > (best[0], -best[1]):
                best = (selection_score(ev), avg.get("loss", math.inf))
                save(out / "best.pt", objective, optimizer, cfg, it + 1, best, mean)
            tqdm.write(f"iter {it + 1}: count {ev['count_accuracy']:.3f} shape {ev['shape_accuracy']:.3f} "
                       f"color {ev['color_accuracy']:.3f} pos {ev['position_error_cm']['median']:.2f}cm "
                       f"yaw {ev['yaw_error_deg']['median']:.1f}deg")
            save(out / "ckpt.pt", objective, optimizer, cfg, it + 1, best, mean)
        log.writerow(row)
        log_file.flush()
        bar.set_postfix(loss=f"{avg.get('loss', math.nan):.3f}")
    save(out / "ckpt.pt", objective, optimizer, cfg, cfg.max_iters, best, mean)
    log_file.close()

    # export the best checkpoint's model
    if cfg.export:
        best_state = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(model_weights(best_state))
        canvases = getattr(objective, "canvases", None)
        extra = {"dair_canvas": {k: v for k, v in canvases.meta.items() if k != "world"}} if canvases else {}
        objective.export(cfg.export, {"train": asdict(cfg), "iter": best_state["iter_num"], **extra})
        print(f"exported {cfg.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
