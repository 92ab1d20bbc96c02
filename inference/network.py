"""The AIR inference network q(z, n | x).

A CNN encodes the 64x64 image once into a feature map F (B, C, 16, 16) with coordinate
channels. A recurrent core (an LSTM cell) then runs up to N steps; each step attends to one
place in F (dot-product attention, with the attention already spent by earlier steps fed back
as a "coverage" map so no object is explained twice), and reads two glimpses there: the
attention-weighted features, and, as in AIR, a window of the image itself cut out around the
attention's centroid with a differentiable sampler (``grid_sample``) and encoded by a small CNN
(the pixel glimpse carries colour and fine shape at full resolution). It then outputs the
distribution of one more object (``inference.distributions``: presence, shape, colour,
table position, yaw).

The count is unary: the first z_pres = 0 ends the sequence. Each step is conditioned on the
latents inferred so far (fed to the LSTM) and on the coverage map.

DAIR (``AIRConfig.dair``): each step also encodes the residual between the image and a
rendering of the objects found so far; the caller supplies the residual images.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from inference.distributions import YAW_ORDERS, Latents, YawTable, greedy, object_params
from inference.views import NUM_CAMERA_FEATURES
from renderer.world import World

FEATURE_STRIDE = 4
GLIMPSE_SAMPLES = 16  # a step's image window is resampled to this many pixels a side


def world_sizes(world: World) -> dict[str, Any]:
    """The architecture fields a world fixes: class counts, image size, yaw symmetry orders."""
    orders = tuple(0 if s.yaw_symmetry_deg is None else round(360.0 / s.yaw_symmetry_deg) for s in world.shapes)
    return dict(num_shapes=len(world.shapes), num_colors=len(world.colors),
                image_size=world.image_size, yaw_orders=orders)


def config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a frozen config dataclass from its JSON dict (lists become tuples); unknown keys
    are an error."""
    known = {f.name for f in fields(cls)}
    if set(d) - known:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(set(d) - known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class JsonConfig:
    """What a frozen architecture dataclass shares: its JSON dict and back."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return config_from_dict(cls, d)

    def check_yaw_orders(self) -> None:
        """ValueError unless there is one yaw symmetry order per shape."""
        if len(self.yaw_orders) != self.num_shapes:
            raise ValueError(f"yaw_orders has {len(self.yaw_orders)} entries for {self.num_shapes} shapes")


# Fields that weights written before the anchored variant moved out (experiments.anchored) carry,
# with these values for every network without it; any other value needs the anchored network.
RETIRED_FIELDS: dict[str, Any] = {"anchor": [], "position_bound": 0.0}


@dataclass(frozen=True)
class AIRConfig(JsonConfig):
    """Architecture. Everything a checkpoint needs to rebuild the network.

    num_shapes, num_colors: sizes of the categorical z_what heads.
    max_steps: N, the most objects one image can hold.
    image_size: side of the square input in pixels (a multiple of 4).
    channels: width of the CNN feature map.
    hidden: LSTM state size.
    yaw_orders: per shape, its yaw symmetry order k (360 / symmetry angle; 0 = yaw unobservable).
    position_scale: metres per unit of the network's position output.
    glimpse_fraction: side of the image window each step cuts out, as a fraction of the image.
    dair: whether each step also sees the residual image (difference AIR).
    shape_positions: the position head also says, for each shape, how far that shape's mean
        position lies from the common one, at most position_scale per axis
        (``StepOutput.where_shift``): a sphere fitted to a
        cone's image sits centimetres from where the cone does, and the ELBO's comparison of
        shapes must put each at its own place (research; the product's network is without).
    view_inputs: the network reads an image through its canonical view (``inference.views``):
        the encoder also gets the view's coverage mask and the camera features as input planes,
        the recurrent core gets the camera features, and a step's position is in normalised
        view coordinates, the attention centroid plus an offset of position_scale units; yaw
        is relative to the ray azimuth. Otherwise the image is the world camera's and position
        is on the table in metres.
    """

    num_shapes: int = 6
    num_colors: int = 6
    max_steps: int = 3
    image_size: int = 64
    channels: int = 64
    hidden: int = 256
    yaw_orders: tuple[int, ...] = (4, 2, 1, 0, 0, 0)
    position_scale: float = 0.25
    glimpse_fraction: float = 0.375
    dair: bool = False
    view_inputs: bool = False
    shape_positions: bool = False

    def __post_init__(self) -> None:
        if self.image_size % FEATURE_STRIDE:
            raise ValueError(f"image_size must be a multiple of {FEATURE_STRIDE}, got {self.image_size}")
        self.check_yaw_orders()

    @classmethod
    def for_world(cls, world: World, **overrides: Any) -> AIRConfig:
        return cls(**{**world_sizes(world), "max_steps": world.max_objects, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AIRConfig:
        """The config of a weights ``.json``. ``RETIRED_FIELDS`` at their empty values are
        dropped; other values name the anchored network (``experiments.anchored``)."""
        d = dict(d)
        known = {f.name for f in fields(cls)}
        for key, empty in RETIRED_FIELDS.items():
            if key in d and key not in known:
                value = d.pop(key)
                if value != empty:
                    raise ValueError(f"the config sets {key}: an anchored network; load it with "
                                     "experiments.anchored.load_anchored")
        return config_from_dict(cls, d)


class StepState(NamedTuple):
    """What carries over between steps.

    h, c: (B, hidden) LSTM state. coverage: (B, L) summed attention of earlier steps over the
    L = (S/4)^2 feature cells. prev: (B, latent_dim) embedding of the previous step's latents.
    """

    h: torch.Tensor
    c: torch.Tensor
    coverage: torch.Tensor
    prev: torch.Tensor


class Context(NamedTuple):
    """What every step reads from the image, computed once per image.

    flat: (B, L, C') feature cells (image features, stacked with residual features for DAIR).
    keys: (B, L, A) attention keys of the cells. pooled: (B, C') mean feature.
    pixels: (B, 3, S, S) the image the pixel glimpses are cut from (the residual for DAIR).

    A step may run P sequences per image (orderings of the same objects): its state then has
    batch B * P, image-major, and the context is shared, never copied.
    """

    flat: torch.Tensor
    keys: torch.Tensor
    pooled: torch.Tensor
    pixels: torch.Tensor


class StepOutput(NamedTuple):
    """Distribution parameters of one step.

    pres_logit (B,), shape_logits (B, S), color_logits (B, K), where_mean (B, 2) metres,
    where_log_std (B, 2), yaw_mu (B, 3) mean of k*yaw for k in (1, 2, 4), yaw_log_kappa (B, 3),
    attention (B, L). where_shift: None, or (B, S, 2) the mean position's shift for each shape
    (``AIRConfig.shape_positions``; ``distributions.where_mean_for`` applies it).
    """

    pres_logit: torch.Tensor
    shape_logits: torch.Tensor
    color_logits: torch.Tensor
    where_mean: torch.Tensor
    where_log_std: torch.Tensor
    yaw_mu: torch.Tensor
    yaw_log_kappa: torch.Tensor
    attention: torch.Tensor
    where_shift: torch.Tensor | None = None


@lru_cache(maxsize=16)
def _coords(size: int, device: torch.device) -> torch.Tensor:
    """(2, size, size) pixel-centre coordinates in [-1, 1]: channel 0 = u (columns), 1 = v (rows).
    Kept per size and device (read only: callers expand and concatenate it)."""
    r = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([u, v])


class Encoder(nn.Module):
    """(B, 3 or 6, S, S) image [+ residual] -> (B, C + 2, S/4, S/4) features with coordinates."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        c = channels
        self.down = nn.Sequential(  # (B, in + 2, S, S) -> (B, C, S/4, S/4)
            nn.Conv2d(in_channels + 2, c // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.refine = nn.Sequential(  # coordinates again at the coarse scale (CoordConv)
            nn.Conv2d(c + 2, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, s, _ = x.shape
        h = self.down(torch.cat([x, _coords(s, x.device).expand(b, -1, -1, -1)], dim=1))
        coords = _coords(h.shape[-1], x.device).expand(b, -1, -1, -1)
        h = self.refine(torch.cat([h, coords], dim=1))
        return torch.cat([h, coords], dim=1)


class GlimpseEncoder(nn.Module):
    """(B, 3, G, G) image window -> (B, D) vector."""

    def __init__(self, out_dim: int = 256) -> None:
        super().__init__()
        g = GLIMPSE_SAMPLES // 4
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * g * g, out_dim), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


def cut_glimpses(pixels: torch.Tensor, centre: torch.Tensor, fraction: float) -> torch.Tensor:
    """Windows of ``fraction`` of the image side around each centre, resampled to
    GLIMPSE_SAMPLES a side.

    pixels: (B, 3, S, S). centre: (B, P, 2) window centres as (u, v) in [-1, 1] (grid_sample's
    normalised coordinates, pixel corners at +-1). Returns (B * P, 3, G, G), image-major.
    """
    b = pixels.shape[0]
    p = centre.shape[1]
    g = GLIMPSE_SAMPLES
    half = fraction  # half the window in normalised units (the image spans 2)
    offs = ((torch.arange(g, device=pixels.device, dtype=pixels.dtype) + 0.5) / g * 2 - 1) * half
    grid = torch.stack([
        centre[:, :, None, None, 0] + offs[None, None, None, :].expand(b, p, g, g),
        centre[:, :, None, None, 1] + offs[None, None, :, None].expand(b, p, g, g),
    ], dim=-1)  # (B, P, G, G, 2)
    out = F.grid_sample(pixels, grid.view(b, p * g, g, 2), align_corners=False, padding_mode="border")
    return out.view(b, 3, p, g, g).transpose(1, 2).reshape(b * p, 3, g, g)


class AIR(nn.Module):
    """q(z, n | x): ``step(t, prev, inputs) -> (StepState, StepOutput)`` run up to N times."""

    config_type = AIRConfig  # what ``inference.checkpoint.load_weights`` rebuilds the config as

    def __init__(self, config: AIRConfig) -> None:
        super().__init__()
        self.config = config
        c, hdim = config.channels, config.hidden
        extra = (1 + NUM_CAMERA_FEATURES) if config.view_inputs else 0  # coverage + camera planes
        self.encoder = Encoder(3 + extra, c)
        self.residual_encoder = Encoder(3, c) if config.dair else None
        feat = c + 2
        self.latent_dim = 1 + config.num_shapes + config.num_colors + 2 + 2
        in_dim = feat * (2 if config.dair else 1) + self.latent_dim + (NUM_CAMERA_FEATURES if config.view_inputs else 0)
        self.core = nn.LSTMCell(in_dim + feat * (2 if config.dair else 1), hdim)  # + the explained features
        # dot-product attention over feature cells; coverage (attention already spent) lowers a
        # cell's logit by a learned amount, so later steps look elsewhere
        att = 64
        self.att_feat = nn.Linear(feat * (2 if config.dair else 1), att)
        self.att_h = nn.Linear(hdim, att)
        self.att_cov = nn.Parameter(torch.tensor(-4.0))
        self.glimpse = GlimpseEncoder(256)
        head_in = hdim + feat * (2 if config.dair else 1) + 256 + 2
        self.head = nn.Sequential(nn.Linear(head_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.out_pres = nn.Linear(256, 1)
        self.out_what = nn.Linear(256, config.num_shapes + config.num_colors)
        self.out_where = nn.Linear(256, 4 + (2 * config.num_shapes if config.shape_positions else 0))
        if config.shape_positions:  # the shifts start at zero: every shape at the common place
            nn.init.zeros_(self.out_where.weight[4:].data)
            nn.init.zeros_(self.out_where.bias[4:].data)
        self.out_yaw = nn.Linear(256, 3 * len(YAW_ORDERS))  # cos, sin, log kappa per order
        self.yaw = YawTable(config.yaw_orders)

    # ---- pieces -----------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, coverage: torch.Tensor | None = None,
               camera: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C + 2, S/4, S/4). With ``view_inputs``, also the
        view's coverage (B, 1, S, S) and camera features (B, NUM_CAMERA_FEATURES)."""
        x = images - 0.5
        if self.config.view_inputs:
            if coverage is None or camera is None:
                raise ValueError("a view_inputs network needs the coverage and camera features (inference.views)")
            planes = camera[:, :, None, None].expand(-1, -1, *images.shape[-2:])
            x = torch.cat([x, coverage - 0.5, planes], dim=1)
        return self.encoder(x)

    def context(self, features: torch.Tensor, pixels: torch.Tensor,
                residual_features: torch.Tensor | None = None, camera: torch.Tensor | None = None) -> Context:
        """Image features (B, C+2, H', W') [+ residual features, DAIR] and the image (or the
        residual, DAIR) the glimpses are cut from (B, 3, S, S) -> the steps' context. With
        ``view_inputs``, the camera features (B, NUM_CAMERA_FEATURES) join the pooled feature
        every step's core reads."""
        if residual_features is not None:
            features = torch.cat([features, residual_features], dim=1)
        flat = features.flatten(2).transpose(1, 2)  # (B, L, C')
        pooled = flat.mean(dim=1)
        if self.config.view_inputs:
            pooled = torch.cat([pooled, camera], dim=-1)
        return Context(flat, self.att_feat(flat), pooled, pixels)

    def initial_state(self, ctx: Context, sequences_per_image: int = 1) -> StepState:
        b, cells, _ = ctx.flat.shape
        b = b * sequences_per_image
        z = ctx.flat.new_zeros(b, self.config.hidden)
        return StepState(z, z, ctx.flat.new_zeros(b, cells), ctx.flat.new_zeros(b, self.latent_dim))

    def embed(self, latents: Latents, t: int) -> torch.Tensor:
        """Step t's latents -> (B, latent_dim) input for the next step. Yaw enters as
        (cos k*yaw, sin k*yaw) with k the shape's order, zeros where yaw is unobservable."""
        shape = latents.shape[:, t]
        k = self.yaw.order[shape].float()
        ang = k * latents.yaw[:, t]
        yaw = torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1) * (k > 0).float()[:, None]
        pres = latents.pres[:, t : t + 1].float()
        emb = torch.cat([
            pres,
            F.one_hot(shape, self.config.num_shapes).float(),
            F.one_hot(latents.color[:, t], self.config.num_colors).float(),
            latents.position[:, t] / self.config.position_scale,
            yaw,
        ], dim=-1)
        return emb * pres

    def step(self, t: int, prev: StepState, ctx: Context) -> tuple[StepState, StepOutput]:
        """One object: the previous state and the image context -> new state, distributions."""
        bi, cells, cf = ctx.flat.shape
        b = prev.h.shape[0]
        p = b // bi  # sequences per image
        per_image = lambda x: x.view(bi, p, -1)  # noqa: E731  (B*P, D) -> (B, P, D)
        # features where earlier steps looked: (B, P, L) @ (B, L, C') -> (B*P, C')
        explained = torch.bmm(per_image(prev.coverage), ctx.flat).view(b, cf)
        pooled = ctx.pooled.repeat_interleave(p, dim=0)
        h, c = self.core(torch.cat([pooled, prev.prev, explained], dim=-1), (prev.h, prev.c))
        query = per_image(self.att_h(h))  # (B, P, A)
        logits = torch.bmm(query, ctx.keys.transpose(1, 2)) / math.sqrt(query.shape[-1])  # (B, P, L)
        logits = logits + self.att_cov * per_image(prev.coverage)
        attention = torch.softmax(logits, dim=-1)
        glimpse = torch.bmm(attention, ctx.flat).view(b, cf)
        centre = torch.bmm(attention, ctx.flat[:, :, -2:])  # (B, P, 2) attended (u, v): the coordinate channels
        pixel_glimpse = self.glimpse(cut_glimpses(ctx.pixels, centre, self.config.glimpse_fraction))  # (B*P, 256)
        attention = attention.view(b, cells)
        z = self.head(torch.cat([h, glimpse, pixel_glimpse, centre.view(b, 2)], dim=-1))
        what = self.out_what(z)
        where = self.out_where(z)
        s = self.config.num_shapes
        params = object_params(self.out_pres(z), what[:, :s], what[:, s:], where[:, :4], self.out_yaw(z),
                               self.config.position_scale, self.position_mean(where, centre.view(b, 2)))
        # at most position_scale per axis: unbounded, the shifts carried proposals off the table
        shift = torch.tanh(where[:, 4:]).view(b, s, 2) * self.config.position_scale if self.config.shape_positions else None
        out = StepOutput(**params, attention=attention, where_shift=shift)
        return StepState(h, c, prev.coverage + attention, prev.prev), out

    def position_mean(self, where: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """The mean table position (B, 2) metres from the position head's output ``where``
        (B, 4) and the attention centroid ``centre`` (B, 2) (u, v) in [-1, 1]; here the head
        alone says it, in units of ``position_scale`` (a variant may override this). With
        ``view_inputs`` it is a view position: the centroid plus the head's offset."""
        if self.config.view_inputs:
            return centre + where[:, :2] * self.config.position_scale
        return where[:, :2] * self.config.position_scale

    # ---- whole sequences --------------------------------------------------------------------
    def teacher_forced(self, ctx: Context | list[Context], latents: Latents) -> list[StepOutput]:
        """Distributions of every step given the true previous latents (T = max_steps).
        ctx: one context for all steps, or (DAIR) one per step."""
        ctxs = ctx if isinstance(ctx, list) else [ctx] * self.config.max_steps
        state = self.initial_state(ctxs[0], latents.pres.shape[0] // ctxs[0].flat.shape[0])
        outs = []
        for t in range(self.config.max_steps):
            state, out = self.step(t, state, ctxs[t])
            outs.append(out)
            state = state._replace(prev=self.embed(latents, t))
        return outs

    def decide(self, out: StepOutput, alive: torch.Tensor) -> Latents:
        """Greedy (mode) latents of one step (T = 1), for inference. alive: (B,) bool, not yet stopped."""
        lat = greedy(out, self.yaw, ((out.pres_logit > 0) & alive).float())
        return Latents(*(x[:, None] for x in lat))
