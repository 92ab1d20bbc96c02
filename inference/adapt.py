"""``airscene adapt``: fit the shipped network, and the renderer's look, to a user's unlabelled images.

Each step has two halves (wake-sleep, as the AIR paper pairs them):

- wake: the ELBO (``inference.elbo``) on a batch of the user's images: q (the network, phi)
  proposes objects, the learned-look renderer (``renderer.learned.LearnedLook``, theta) draws
  them in the image's view, and the pixel likelihood trains both; the discrete choices learn by
  NVIL's score function, position and yaw through the soft renderer;
- sleep: the amortised objective (``inference.amortised``) on scenes drawn from the prior and
  rendered in the same views, half with the learned look (the world the user's camera shows,
  as far as theta says) and half with looks from the training prior (``renderer.appearance``),
  so that what the network knew is rehearsed, not forgotten.

For the first ``look_steps`` steps only theta learns (the network is frozen): the likelihood
first learns to compare like with like, so that the network is not pushed to explain the
renderer's mismatch. A ``CollapseGuard`` watches the count distribution of q's samples and stops
the run with ``AdaptCollapse`` when it collapses onto one count it was not on before.

Checkpoints (``<out>.ckpt.pt``) keep everything a run needs to resume bit for bit
(``resume=True``); the end writes weights that ``airscene serve --weights`` serves, with the
learned look in their metadata (``meta.adapted``). The probability calibration of the weights
adapted from does not carry over (it was fitted to the network before adaptation), so the
answers of adapted weights report ``model.calibrated: false``; the world limits behind
``in_world`` (checks of the image against the drawn answer) do.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from inference.amortised import amortised_loss
from inference.averaging import WeightMean
from inference.checkpoint import interpolate, load_weights, save_weights
from inference.elbo import NVIL, Baseline, best_shapes, elbo_terms, self_label_loss
from inference.network import AIR
from inference.preprocess import image_tensor, upright
from inference.views import ViewInput, stack_inputs, warp_to_view
from renderer.appearance import LookPrior, sample_looks
from renderer.learned import LearnedLook
from renderer.photo import render_photo
from renderer.pinhole import Cameras, spec_cameras
from renderer.prior import sample_scenes
from renderer.world import World

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class AdaptConfig:
    """steps, batch: optimiser steps and images per step (wake; the sleep half draws as many;
    16 a step did no better than 8 on development images, at twice the time: model card).
    lr, look_lr, baseline_lr: Adam learning rates of the network, theta and NVIL's baseline.
    look_steps: first steps that train theta only. elbo_trains_network: False: the ELBO trains
    theta (and the baseline) only, the network learns from the sleep half alone.
    rho: the prior's p(z_pres = 1) per step.
    size: side of the likelihood's image (divides the view's side). sleep_weight: weight of the
    sleep half (0: ELBO only). collapse_window, collapse_share: the guard's window (steps) and
    the share of samples on one count that means collapse. checkpoint_every: steps between
    checkpoints. keep: the share of the starting weights mixed back into the weights written
    (``inference.checkpoint.interpolate``; 0 writes the network as adaptation left it): a fine-tune
    averaged with its start keeps more of what the start knew; with ``average`` the development
    images preferred none (numbers: the model card). seed: the run's randomness. threads: torch
    CPU threads. device: where the network, theta and the likelihood's renders run ('cpu',
    'cuda', 'cuda:N'); the prior's scenes and the sleep half's training-prior photos are drawn on
    the CPU (seeded as on the CPU) and moved there. self_label: weight of the self-label on the
    user's images (``inference.elbo.self_label_loss``; 0: none): q's shape at each drawn object
    also learns the shape the learned look's likelihood likes best there, S extra renders an
    image and object; trains the network only where the ELBO does. Off by default: one trial on
    the shifted look gained nothing (model card). average: the share of the last steps whose
    network weights are averaged into the weights written (``inference.averaging``, a snapshot
    after each of them, before ``keep`` mixes in the start; 0: the last step's weights; 0.5, the
    default, was better than the last step on development images, the same run compared). A run
    resumed with more steps starts its mean afresh where the new window starts, or at the resumed
    step when that is later."""

    steps: int = 1200
    batch: int = 8
    lr: float = 4e-5
    look_lr: float = 2e-2
    baseline_lr: float = 1e-3
    look_steps: int = 100
    rho: float = 0.5
    size: int = 40
    sleep_weight: float = 1.0
    elbo_trains_network: bool = True
    collapse_window: int = 50
    collapse_share: float = 0.9
    checkpoint_every: int = 50
    keep: float = 0.0
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    self_label: float = 0.0
    average: float = 0.5


class AdaptCollapse(RuntimeError):
    """The count distribution of q's samples collapsed; the run stopped."""


class CollapseGuard:
    """Fires when, over the last ``window`` steps, at least ``share`` of q's samples have one
    count that held less than half that share over the first ``window`` steps (the network's
    behaviour before adaptation moved it)."""

    def __init__(self, window: int, share: float) -> None:
        self.window, self.share = window, share
        self.initial: Counter = Counter()
        self.recent: deque = deque(maxlen=window)
        self.seen = 0

    def update(self, counts: list[int]) -> str | None:
        """Record one step's sample counts; return the reason when collapsed, else None."""
        self.seen += 1
        if self.seen <= self.window:
            self.initial.update(counts)
        self.recent.append(counts)
        if self.seen < 2 * self.window:
            return None
        now = Counter(c for step in self.recent for c in step)
        count, hits = now.most_common(1)[0]
        total_now, total_then = sum(now.values()), max(1, sum(self.initial.values()))
        before = self.initial[count] / total_then
        if hits / total_now >= self.share and before < self.share / 2:
            shares = ", ".join(f"{k}: {v / total_now:.0%}" for k, v in sorted(now.items()))
            return (f"the object count collapsed: over the last {self.window} steps {hits / total_now:.0%} of "
                    f"the network's samples say {count} object(s) (at the start {before:.0%}); counts now {shares}. "
                    "The images may not show this world's objects, or the look could not be learned; "
                    "lower --lr or check the images and camera")
        return None

    def state(self) -> dict:
        return {"initial": dict(self.initial), "recent": list(self.recent), "seen": self.seen}

    def load_state(self, s: dict) -> None:
        self.initial = Counter({int(k): v for k, v in s["initial"].items()})
        self.recent = deque(s["recent"], maxlen=self.window)
        self.seen = s["seen"]


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def load_views(files: list[Path], world: World,
               camera_for: Callable[[Path, int, int], Cameras] | None = None) -> ViewInput:
    """The images as the network's views. ``camera_for(path, height, width)`` gives an image's
    camera; None: the world's fixed camera."""
    views = []
    for path in files:
        with Image.open(path) as im:
            pixels = image_tensor(upright(im))  # turned and converted as /infer does
        h, w = pixels.shape[-2:]
        cam = camera_for(path, h, w) if camera_for is not None else spec_cameras(world.camera, 1, h, w)
        views.append(warp_to_view(pixels, cam, world))
    return stack_inputs(views)


def sleep_batch(v: ViewInput, world: World, look: LearnedLook, g: torch.Generator):
    """Prior scenes in the views of ``v``, the first half drawn with the learned look, the rest
    with training-prior looks. Coverage is full (the whole view is seen): the objects drawn lie
    in the view, not necessarily in the user's camera's image. -> (ViewInput, scenes)."""
    b = v.pixels.shape[0]
    device = v.pixels.device
    view = v.view.to("cpu")
    scenes = sample_scenes(world, b, generator=g, cameras=[view])
    half = b // 2
    size = v.pixels.shape[-1]
    with torch.no_grad():  # both anti-aliased as the training photos are (drawn at twice the size)
        own = look.render(scenes.select(slice(0, half)).to(device),
                          v.view.select(slice(0, half)).resized(2 * size, 2 * size), 0.0, 1)
        own = F.avg_pool2d(own.permute(0, 3, 1, 2), 2)
        rest = render_photo(scenes.select(slice(half, b)), world, view.select(slice(half, b)),
                            sample_looks(LookPrior(), b - half, g), g).permute(0, 3, 1, 2)
    pixels = torch.cat([own, rest.to(device)]).contiguous()
    return ViewInput(pixels, torch.ones_like(pixels[:, :1]), v.features, v.view), scenes.to(device)


def _optimizer(model: AIR, look: LearnedLook, baseline: Baseline, cfg: AdaptConfig) -> torch.optim.Adam:
    return torch.optim.Adam([{"params": list(model.parameters()), "lr": cfg.lr},
                             {"params": list(look.parameters()), "lr": cfg.look_lr},
                             {"params": list(baseline.parameters()), "lr": cfg.baseline_lr}])


def _step(model: AIR, look: LearnedLook, baseline: Baseline, nvil: NVIL, v: ViewInput, world: World,
          cfg: AdaptConfig, g: torch.Generator, train_network: bool) -> tuple[torch.Tensor, dict, list[int]]:
    """One step's loss, its numbers, and the counts q sampled."""
    wake_network = train_network and cfg.elbo_trains_network
    elbo, sample, log_lik = elbo_terms(model, look, v, world, cfg.rho, cfg.size, q_gradients=wake_network)
    surrogate, base_loss = nvil.surrogate(elbo, sample.log_q_discrete, baseline(v.pixels))
    pixels = 3 * cfg.size * cfg.size
    loss = -elbo.mean() / pixels + base_loss + (surrogate if wake_network else 0.0)
    stats = {"elbo": float(elbo.detach().mean()), "log_lik": float(log_lik.detach().mean()),
             "count": float(sample.objects.pres.sum(1).mean()), "sigma": float(look.sigma().detach())}
    if wake_network and cfg.self_label > 0:
        best = best_shapes(sample, v, world, look, cfg.size)
        loss = loss + cfg.self_label * self_label_loss(sample, best)
        drawn = sample.objects.pres.sum().clamp_min(1)
        stats["self_label_agree"] = float((sample.objects.pres * (best == sample.objects.shape)).sum() / drawn)
    if train_network and cfg.sleep_weight > 0:
        sv, scenes = sleep_batch(v, world, look, g)
        sleep, _ = amortised_loss(model, sv.pixels, scenes, world, view=sv)
        loss = loss + cfg.sleep_weight * sleep
        stats["sleep"] = float(sleep.detach())
    return loss, stats, [int(c) for c in sample.objects.pres.sum(1).tolist()]


class _Run:
    """Everything an adaptation run keeps and a checkpoint holds."""

    def __init__(self, weights: str | Path, cfg: AdaptConfig) -> None:
        self.model, self.world, self.meta = load_weights(weights)
        if not self.model.config.view_inputs:
            raise ValueError(f"{weights} is a fixed-camera network; adaptation needs a view network")
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r} asked for, but torch sees no CUDA device (use 'cpu')")
        self.model.to(self.device)
        self.look, self.baseline = LearnedLook(self.world).to(self.device), Baseline().to(self.device)
        self.nvil = NVIL()
        self.opt = _optimizer(self.model, self.look, self.baseline, cfg)
        self.guard = CollapseGuard(cfg.collapse_window, cfg.collapse_share)
        self.g = torch.Generator().manual_seed(cfg.seed)
        self.step, self.seconds, self.history = 0, 0.0, []
        self.mean, self.mean_from = None, 0  # the running weight mean and the step after which it snapshots

    def average_from(self, cfg: AdaptConfig) -> None:
        """Start the weight mean where ``cfg``'s window starts, unless it already holds that window."""
        start = cfg.steps - round(cfg.average * cfg.steps)
        if cfg.average > 0 and (self.mean is None or self.mean_from != start):
            self.mean, self.mean_from = WeightMean(self.model), start

    def save(self, path: Path, cfg: AdaptConfig, images: int) -> None:
        torch.save({"config": asdict(cfg), "images": images, "step": self.step, "seconds": self.seconds,
                    "history": self.history, "model": self.model.state_dict(), "look": self.look.state_dict(),
                    "baseline": self.baseline.state_dict(), "optimizer": self.opt.state_dict(),
                    "nvil": self.nvil.state(), "guard": self.guard.state(), "generator": self.g.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "weight_mean": None if self.mean is None else {"from": self.mean_from, **self.mean.state()},
                    "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}, path)

    def load(self, path: Path, cfg: AdaptConfig, images: int) -> None:
        ck = torch.load(path, weights_only=False, map_location="cpu")  # load_state_dict moves it
        # steps may grow; where it runs (and on how many threads) and what is written do not make it another run
        settings = lambda c: {k: v for k, v in c.items() if k not in ("steps", "device", "threads", "keep")}  # noqa: E731
        saved = {**asdict(AdaptConfig()), **ck["config"]}  # a setting added since the checkpoint: its default
        if settings(saved) != settings(asdict(cfg)) or ck["images"] != images:
            raise ValueError(f"{path} is another run's checkpoint (other settings or images); "
                             "remove it, pass the same settings, or restart")
        if "apex_logit" not in ck["look"]:
            raise ValueError(f"{path} was written before the learned look had a cone tip's rounding "
                             "(renderer.learned.LearnedLook.apex_rounding); remove it and restart")
        self.model.load_state_dict(ck["model"])
        self.look.load_state_dict(ck["look"])
        self.baseline.load_state_dict(ck["baseline"])
        self.opt.load_state_dict(ck["optimizer"])
        self.nvil.load_state(ck["nvil"])
        self.guard.load_state(ck["guard"])
        self.g.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        if ck.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ck["cuda_rng"], self.device)
        self.step, self.seconds, self.history = ck["step"], ck["seconds"], ck["history"]
        if ck.get("weight_mean"):
            self.mean, self.mean_from = WeightMean(self.model), ck["weight_mean"]["from"]
            self.mean.load(ck["weight_mean"])

    def train_step(self, images: ViewInput, cfg: AdaptConfig) -> tuple[dict, list[int]]:
        t0 = time.perf_counter()
        idx = torch.randint(images.pixels.shape[0], (min(cfg.batch, images.pixels.shape[0]),), generator=self.g)
        batch = images[idx].to(self.device)
        train_network = self.step >= cfg.look_steps
        loss, stats, counts = _step(self.model, self.look, self.baseline, self.nvil, batch, self.world,
                                    cfg, self.g, train_network)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if not train_network:
            for p in self.model.parameters():
                p.grad = None
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.seconds += time.perf_counter() - t0
        self.step += 1
        if self.mean is not None and self.step > self.mean_from:
            self.mean.add(self.model)
        self.history.append({"step": self.step, **{k: round(v, 4) for k, v in stats.items()}})
        return stats, counts


def adapt(images: ViewInput, weights: str | Path, out: str | Path, cfg: AdaptConfig = AdaptConfig(),
          resume: bool = True, callback: Callable[[int, AIR, dict], None] | None = None,
          progress: bool = True) -> dict:
    """Adapt ``weights`` to ``images`` (views, ``load_views``); write ``out`` (+ its .json) and
    return the run's summary (the learned look, steps, seconds). Checkpoints to
    ``<out>.ckpt.pt`` and, with ``resume``, continues from it (the same settings and images; only
    ``steps`` may grow, ``device``, ``threads`` and ``keep`` may change: a finished run resumed with
    another ``keep`` writes that mix). ``callback(step, model, stats)``
    runs after every step. Raises ``AdaptCollapse`` when the count distribution collapses."""
    if not 0.0 <= cfg.keep <= 1.0:
        raise ValueError(f"keep must be within [0, 1], got {cfg.keep}")
    if not 0.0 <= cfg.average < 1.0:
        raise ValueError(f"average must be within [0, 1), got {cfg.average}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the baseline's initial weights and q's draws: a run is reproducible
    run = _Run(weights, cfg)
    n = images.pixels.shape[0]
    ckpt = Path(str(out) + ".ckpt.pt")
    if resume and ckpt.exists():
        run.load(ckpt, cfg, n)
    run.average_from(cfg)
    run.model.train()
    bar = tqdm(range(run.step, cfg.steps), initial=run.step, total=cfg.steps, desc="adapt", disable=not progress)
    for _ in bar:
        stats, counts = run.train_step(images, cfg)
        bar.set_postfix(elbo=f"{stats['elbo']:.0f}", count=f"{stats['count']:.2f}", sigma=f"{stats['sigma']:.3f}")
        if callback is not None:
            callback(run.step, run.model, stats)
        reason = run.guard.update(counts)
        if reason is not None:
            raise AdaptCollapse(f"stopped at step {run.step}: {reason}")
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
            run.save(ckpt, cfg, n)
    summary = {"from": str(weights), "images": n, "steps": run.step, "seconds": round(run.seconds, 1),
               "seconds_per_step": round(run.seconds / max(1, len(run.history)), 3),
               "look": run.look.describe(), "config": asdict(cfg),
               "averaged_steps": 0 if run.mean is None else run.mean.count}
    kept = {k: v for k, v in run.meta.items() if k not in ("calibration", "metrics")}
    # the image checks and the mirror reading stay (they are not probabilities); temperatures and trust go
    source = run.meta.get("calibration", {})
    if any(k in source for k in ("limits", "mirror")):
        kept["calibration"] = {k: source[k] for k in ("limits", "mirror") if k in source}
    if run.mean is not None and run.mean.count:
        run.mean.write_to(run.model)
    model = run.model.eval().cpu()
    if cfg.keep > 0:
        start, _, _ = load_weights(weights)
        model.load_state_dict(interpolate(model, start, cfg.keep))
    save_weights(model, run.world, out, {**kept, "adapted": summary})
    return summary
