"""Inference by optimisation (analysis by synthesis): render and compare, no network.

What a user without an inference network would do with our fully specified generative model.
For each image and each candidate count k = 0..N:

1. **Starts.** R starts per image. Count k begins from the best fit of count k - 1 (its objects
   stay, and are re-optimised) plus one new object. The new object's table position is drawn
   from a grid of table points weighted by how much of the image is still unexplained where each
   point projects (the residual of the k - 1 fit, squared and smoothed): a data-driven proposal,
   as in data-driven MCMC (``proposals="uniform"`` draws it uniformly on the placement square).
   Its shape is stratified over the starts (start r of an image gets shape (o + r) mod S for a
   random o: with R >= S starts every shape is tried), its colour and yaw are drawn uniformly.
2. **Continuous fit.** Adam on every present object's (x, y, yaw) through the ``soft``
   renderer, minimising the mean squared pixel error; the step size decays (cosine) to a tenth.
   Coarse to fine: the edge blur starts at ``blur_start_px`` (a wide basin: the gradient
   reaches farther from an edge) and shrinks to ``blur_end_px`` in a few stages.
3. **Discrete choices by enumeration.** Before the first step each present slot tries every
   colour; then ``sweeps`` times, evenly spaced, the last after the final step, each present
   slot tries every colour, then every shape (each at several yaws over its symmetry period),
   at its current position. The best by hard-rendered error is kept.
4. **Best of starts.** Each start is scored by the exact image error: a hard render at 2x,
   box-filtered and quantised exactly as the data was (``renderer.dataset.render_images``), so
   the true scene scores 0. The best start per image is the count-k fit.

The count is chosen by the penalised fit ``error_k + count_penalty * k`` (``choose_count``);
``calibrate_penalty`` picks the penalty on labelled calibration scenes (the method's one tuned
setting, as the networks' training is theirs). The budget is ``starts`` x ``steps`` (see
``FitSettings``); all starts of all images in a call run as one batch.

Shapes: B images, R starts, N slots, S the image side. Frames as in ``renderer``: world
metres and radians, z up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from renderer.camera import project
from renderer.dataset import render_images
from renderer.render import SceneRenderer, make_renderer, render
from renderer.scene import SceneBatch, empty_scenes
from renderer.world import World

PROPOSALS = ("residual", "uniform")
PROPOSAL_GRID = 33  # table points per side for the residual proposal
BLUR_STAGES = 3  # coarse-to-fine levels between blur_start_px and blur_end_px


@dataclass(frozen=True)
class FitSettings:
    """Budget and knobs of the render-and-compare fit.

    starts: R random starts per image and count (>= 1); 6 or more tries every shape for each
        new object.
    steps: Adam steps per start and count (>= 0). The budget per image is about
        N * starts * steps soft renders with gradients, plus the sweeps' hard renders.
    sweeps: full discrete sweeps per count, evenly spaced, the last after the final step; each
        tries every colour, then every (shape, yaw), for each present slot. With sweeps >= 1
        a colour-only sweep also runs before the first step. 0 = keep the starts' draws.
    position_lr: Adam step on (x, y), metres. yaw_lr: Adam step on yaw, radians. Both decay
        (cosine) to a tenth over the steps.
    blur_start_px, blur_end_px: soft-edge sigma in pixels at the first and last stage
        (geometric in between, ``BLUR_STAGES`` stages); both > 0.
    faces_per_pixel: faces the soft shader composites per pixel.
    count_penalty: added per object to the mean squared error (pixel values in [0, 1], mean
        over pixels and channels) when the count is chosen; >= 0.
    proposals: ``"residual"`` (new objects start where the image is unexplained) or
        ``"uniform"``.
    """

    starts: int = 6
    steps: int = 30
    sweeps: int = 2
    position_lr: float = 0.01
    yaw_lr: float = 0.1
    blur_start_px: float = 2.0
    blur_end_px: float = 0.5
    faces_per_pixel: int = 6
    count_penalty: float = 3e-4
    proposals: str = "residual"

    def __post_init__(self) -> None:
        if self.starts < 1:
            raise ValueError(f"starts must be >= 1, got {self.starts}")
        if self.steps < 0 or self.sweeps < 0:
            raise ValueError(f"steps and sweeps must be >= 0, got steps={self.steps}, sweeps={self.sweeps}")
        if not (self.blur_start_px > 0 and self.blur_end_px > 0):
            raise ValueError(f"blur must be > 0 px, got {self.blur_start_px} -> {self.blur_end_px}")
        if self.count_penalty < 0:
            raise ValueError(f"count_penalty must be >= 0, got {self.count_penalty}")
        if self.proposals not in PROPOSALS:
            raise ValueError(f"proposals must be one of {PROPOSALS}, got {self.proposals!r}")

    @property
    def label(self) -> str:
        """``"STARTSxSTEPS"``, as ``parse_budget`` reads it."""
        return f"{self.starts}x{self.steps}"


def parse_budget(text: str, **overrides) -> FitSettings:
    """``"4x30"`` -> FitSettings(starts=4, steps=30, **overrides)."""
    starts, x, steps = text.partition("x")
    if not x or not starts.isdigit() or not steps.isdigit():
        raise ValueError(f"a budget is STARTSxSTEPS, e.g. 4x30; got {text!r}")
    return FitSettings(starts=int(starts), steps=int(steps), **overrides)


@dataclass(frozen=True)
class Fit:
    """Best fit per image and candidate count.

    candidates: N + 1 SceneBatches (B, N slots each); candidates[k] holds k present objects
        in slots 0..k-1.
    errors: (B, N + 1) float, exact image error (mean squared, pixels in [0, 1]) of each
        candidate.
    """

    candidates: tuple[SceneBatch, ...]
    errors: torch.Tensor

    def select(self, count_penalty: float) -> SceneBatch:
        """The candidate of the chosen count for each image: (B, N) SceneBatch."""
        chosen = choose_count(self.errors, count_penalty)
        fields = [torch.stack([getattr(c, f) for c in self.candidates], dim=1)  # (B, N+1, N, ...)
                  for f in ("present", "shape", "color", "position", "yaw")]
        b = torch.arange(self.errors.shape[0])
        return SceneBatch(*(x[b, chosen] for x in fields))


def choose_count(errors: torch.Tensor, count_penalty: float) -> torch.Tensor:
    """errors (B, K + 1) of the fits with 0..K objects -> (B,) int64 argmin of
    ``error_k + count_penalty * k`` (the smaller count on ties)."""
    k = torch.arange(errors.shape[1], dtype=errors.dtype, device=errors.device)
    return (errors + count_penalty * k).argmin(dim=1)


def calibrate_penalty(errors: torch.Tensor, true_count: torch.Tensor,
                      grid: np.ndarray | None = None) -> float:
    """The per-object penalty that maximises count accuracy on labelled calibration fits.

    errors: (B, K + 1) from ``fit``; true_count: (B,). Among equally good penalties on the
    grid (default: 0 and 41 values log-spaced from 1e-6 to 1e-1) the middle one is returned.
    """
    grid = np.concatenate([[0.0], np.logspace(-6, -1, 41)]) if grid is None else np.asarray(grid)
    acc = np.array([(choose_count(errors, float(p)) == true_count).float().mean().item() for p in grid])
    best = np.flatnonzero(acc == acc.max())
    return float(grid[best[len(best) // 2]])


# ---- pieces -----------------------------------------------------------------------------------
def image_error(scene: SceneBatch, targets: torch.Tensor, world: World) -> torch.Tensor:
    """Exact error of each scene: render as the data was made, mean squared difference.

    targets: (B, 3, S, S) float in [0, 1]. Returns (B,).
    """
    image = render_images(scene, world).permute(0, 3, 1, 2).float() / 255.0
    return ((image - targets) ** 2).mean(dim=(1, 2, 3))


def with_pose(scene: SceneBatch, xy: torch.Tensor, yaw: torch.Tensor, world: World) -> SceneBatch:
    """The scene with table positions xy (B, N, 2) and yaw (B, N); z = each shape's resting height."""
    rest = torch.tensor([s.resting_z for s in world.shapes], device=xy.device, dtype=xy.dtype)
    position = torch.cat([xy, rest[scene.shape][..., None]], dim=-1)
    return SceneBatch(scene.present, scene.shape, scene.color, position, yaw)


def sweep_discrete(scene: SceneBatch, targets: torch.Tensor, world: World, yaw_trials: int = 8,
                   latents: tuple[str, ...] = ("color", "shape")) -> SceneBatch:
    """Coordinate descent over the discrete latents: each present slot in turn tries every
    colour, then every (shape, yaw) pair, at its current position; the choice with the lowest
    hard-rendered error stays. ``latents`` limits the sweep (``("color",)``: colours only).

    Colour goes first: under a wrong colour the smallest shape wins (it shows the least wrong
    colour), while a colour is judged well on any shape that overlaps the object.

    Yaw is enumerated with the shape (``yaw_trials`` turns spread over the shape's symmetry
    period, the current yaw first; one for shapes without observable yaw): a shape tried at a
    wrong yaw would lose to a round one, and a round one gives no yaw gradient to recover.
    scene: (B, N); targets: (B, 3, S, S). Absent slots are left as they are.
    """
    size = targets.shape[-1]
    target = targets.permute(0, 2, 3, 1)
    b = scene.batch_size
    shapes, turns = [], []  # candidate table: shape index and yaw offset (radians) from the current yaw
    for i, spec in enumerate(world.shapes):
        period = None if spec.yaw_symmetry_deg is None else math.radians(spec.yaw_symmetry_deg)
        offsets = [0.0] if period is None else [period * t / yaw_trials for t in range(yaw_trials)]
        shapes += [i] * len(offsets)
        turns += offsets
    tables = {"shape": (torch.tensor(shapes), torch.tensor(turns)),
              "color": (torch.arange(len(world.colors)), torch.zeros(len(world.colors)))}
    for j in range(scene.num_slots):
        here = scene.present[:, j]
        if not here.any():
            continue
        for name in latents:
            values, turn = tables[name]
            c = len(values)
            rep = lambda x: x.repeat_interleave(c, dim=0)  # noqa: E731  (B, ...) -> (B * C, ...)
            trial = {f: rep(getattr(scene, f)).clone() for f in ("shape", "color", "yaw")}
            trial[name][:, j] = values.repeat(b)
            trial["yaw"][:, j] += turn.repeat(b)
            candidates = with_pose(SceneBatch(rep(scene.present), trial["shape"], trial["color"],
                                              rep(scene.position), trial["yaw"]), rep(scene.position[..., :2]),
                                   trial["yaw"], world)
            err = ((render(candidates, world, "hard", size, size) - rep(target)) ** 2).mean(dim=(1, 2, 3))
            best = torch.arange(b) * c + err.view(b, c).argmin(dim=1)  # (B,) row of the best candidate
            keep = here[:, None]
            scene = SceneBatch(scene.present,
                               torch.where(keep, candidates.shape[best], scene.shape),
                               torch.where(keep, candidates.color[best], scene.color),
                               torch.where(keep[..., None], candidates.position[best], scene.position),
                               torch.where(keep, candidates.yaw[best], scene.yaw))
    return scene


def _blur_levels(settings: FitSettings) -> list[float]:
    a, b = math.log(settings.blur_start_px), math.log(settings.blur_end_px)
    return [math.exp(a + (b - a) * i / max(1, BLUR_STAGES - 1)) for i in range(BLUR_STAGES)]


def _soft_renderers(world: World, settings: FitSettings, size: int) -> list[SceneRenderer]:
    return [make_renderer(world, "soft", size, size, blur_sigma_px=s, faces_per_pixel=settings.faces_per_pixel)
            for s in _blur_levels(settings)]


def fit_poses(scene: SceneBatch, targets: torch.Tensor, world: World, settings: FitSettings) -> SceneBatch:
    """The core step: ``settings.steps`` Adam steps on every present object's (x, y, yaw)
    through the soft renderer (coarse to fine), with ``settings.sweeps`` discrete sweeps.

    scene: (B, N) starting scenes; targets: (B, 3, S, S) float in [0, 1]. Returns the fitted
    (B, N) SceneBatch (detached; z at each shape's resting height).
    """
    size = targets.shape[-1]
    target = targets.permute(0, 2, 3, 1).detach()
    renderers = _soft_renderers(world, settings, size)
    # Sweep before step i for i in sweep_at; i == steps means after the last step. At step 0
    # colours only: a shape tried away from its object is judged on the wrong pixels (measured:
    # a wedge start 5 cm off was swapped for a sphere at step 0 and never found the wedge
    # again), while a wrong colour makes the object's pull toward its blob weak (a red start
    # 5 cm from a yellow wedge drifted away for 4 of 6 start shapes).
    sweep_at = {round(i * settings.steps / settings.sweeps) for i in range(1, settings.sweeps + 1)}
    if settings.sweeps and settings.steps:
        scene = sweep_discrete(scene, targets, world, latents=("color",))
    xy = scene.position[..., :2].detach().clone().requires_grad_(True)
    yaw = scene.yaw.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [xy], "lr": settings.position_lr},
                            {"params": [yaw], "lr": settings.yaw_lr}])
    limit = world.placement_half_extent + 0.05  # keep objects over the table, a little past the prior's square
    for step in range(settings.steps):
        # cosine decay to a tenth: long moves early, precise poses at the end
        decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        for group, lr in zip(opt.param_groups, (settings.position_lr, settings.yaw_lr)):
            group["lr"] = lr * decay
        if step in sweep_at:
            scene = sweep_discrete(with_pose(scene, xy.detach(), yaw.detach(), world), targets, world)
            with torch.no_grad():
                yaw.copy_(scene.yaw)  # the sweep picks yaw with the shape
        stage = step * len(renderers) // max(1, settings.steps)
        image = renderers[stage](with_pose(scene, xy, yaw, world))
        # sum over images of each image's mean error: Adam is per element, so images (and
        # starts) in the batch do not interact
        loss = ((image - target) ** 2).mean(dim=(1, 2, 3)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            xy.clamp_(-limit, limit)
    scene = with_pose(scene, xy.detach(), yaw.detach(), world)
    if settings.steps in sweep_at:
        scene = sweep_discrete(scene, targets, world)
    return scene


def propose_positions(base: SceneBatch, targets: torch.Tensor, world: World, starts: int,
                      proposals: str, generator: torch.Generator) -> torch.Tensor:
    """Table positions (B, R, 2) for a new object in each of R starts per image.

    ``residual``: grid points drawn with probability proportional to the smoothed squared
    residual of ``base`` where they project (plus a small floor), jittered within a grid cell.
    ``uniform``: uniform on the placement square.
    """
    b = targets.shape[0]
    e = world.placement_half_extent
    if proposals == "uniform":
        return (torch.rand(b, starts, 2, generator=generator) * 2 - 1) * e
    size = targets.shape[-1]
    with torch.no_grad():
        recon = render_images(base, world).permute(0, 3, 1, 2).float() / 255.0
    resid = ((targets - recon) ** 2).sum(dim=1, keepdim=True)  # (B, 1, S, S)
    resid = F.avg_pool2d(resid, 5, stride=1, padding=2)[:, 0]
    g = PROPOSAL_GRID
    axis = torch.linspace(-e, e, g)
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    mean_z = sum(s.resting_z for s in world.shapes) / len(world.shapes)
    points = torch.stack([gx.flatten(), gy.flatten(), torch.full((g * g,), mean_z)], dim=-1)  # (G*G, 3)
    uv, _ = project(points, world, size, size)
    col = uv[:, 0].floor().long().clamp(0, size - 1)
    row = uv[:, 1].floor().long().clamp(0, size - 1)
    weight = resid[:, row, col].cpu() + 1e-6  # (B, G*G)
    pick = torch.multinomial(weight, starts, replacement=True, generator=generator)  # (B, R)
    cell = 2 * e / (g - 1)
    jitter = (torch.rand(b, starts, 2, generator=generator) - 0.5) * cell
    return points[pick, :2] + jitter


@torch.no_grad()
def _add_object(base: SceneBatch, slot: int, xy: torch.Tensor, new_shape: torch.Tensor, world: World,
                generator: torch.Generator) -> SceneBatch:
    """base (B', N) with a new object at ``slot``: shape new_shape (B',), placed at xy (B', 2),
    random colour and yaw."""
    b = base.batch_size
    present = base.present.clone()
    present[:, slot] = True
    shape, color, yaw = base.shape.clone(), base.color.clone(), base.yaw.clone()
    position = base.position.clone()
    shape[:, slot] = new_shape
    color[:, slot] = torch.randint(len(world.colors), (b,), generator=generator)
    yaw[:, slot] = (torch.rand(b, generator=generator) * 2 - 1) * math.pi
    position[:, slot, :2] = xy
    scene = SceneBatch(present, shape, color, position, yaw)
    return with_pose(scene, scene.position[..., :2], scene.yaw, world)


def fit(images: torch.Tensor, world: World, settings: FitSettings,
        generator: torch.Generator | None = None) -> Fit:
    """Fit every candidate count 0..N to each image (module docstring).

    images: (B, 3, S, S) float in [0, 1], S = world.image_size. Returns a ``Fit``; call
    ``.select(settings.count_penalty)`` for the answer.
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != world.image_size:
        raise ValueError(f"images must be (B, 3, {world.image_size}, {world.image_size}), got {tuple(images.shape)}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    b, n, r = images.shape[0], world.max_objects, settings.starts
    best = empty_scenes(b, n)
    candidates = [best]
    errors = [image_error(best, images, world)]
    rep_images = images.repeat_interleave(r, dim=0)  # (B * R, 3, S, S), image-major
    for k in range(1, n + 1):
        xy = propose_positions(best, images, world, r, settings.proposals, generator)  # (B, R, 2)
        starts = SceneBatch(*(x.repeat_interleave(r, dim=0) for x in
                              (best.present, best.shape, best.color, best.position, best.yaw)))
        # the new object's shape is stratified over the starts: with R >= S every shape is tried
        shapes = (torch.randint(len(world.shapes), (b, 1), generator=generator) + torch.arange(r)) % len(world.shapes)
        starts = _add_object(starts, k - 1, xy.reshape(b * r, 2), shapes.reshape(b * r), world, generator)
        fitted = fit_poses(starts, rep_images, world, settings)
        err = image_error(fitted, rep_images, world).view(b, r)
        pick = torch.arange(b) * r + err.argmin(dim=1)
        best = fitted.select(pick)
        candidates.append(best)
        errors.append(err.amin(dim=1))
    return Fit(tuple(candidates), torch.stack(errors, dim=1))
