"""How well an answer explains its image: the generative model's check on the network.

The answer is rendered with the image's own camera (in the network's view: at ``FIT_SIZE`` for
most checks, at the view's own resolution for the outline;
``renderer.raycast``) as a map of regions: each found object, the table, and what lies beyond the table. Nothing of
the look is assumed: each region's colour is read off the image itself (its mean), so a warm
light, a dark table or another renderer's shading do not count against the answer; what counts
is whether the image's pixels fall into the regions the answer draws.

- Object fit, per object in [0, 1]: how well its drawn silhouette separates it from the table:
  the share of its pixels closer to its own colour than to the table's, times the share of a
  ring of table just outside it that is closer to the table's colour (a wrong shape, a wrong
  place or a size off all lose pixels on one side), times how far its colour stands from the
  table's (an object drawn on bare table has no contrast: fit near 0).
- Unexplained share, per image in [0, 1]: the fraction of the table region, away from every
  found object, that does not look like table (the shading-free distance from the table colour
  exceeds ``OUTLIER``): a missed object or a foreign thing on the table raises it.
- Image fit, in [0, 1]: the worst object fit, times one minus the unexplained share scaled by
  ``UNEXPLAINED_SCALE`` (a share that large, about one object's area, counts as a total miss).
  1 is a perfect explanation.
- Spill, per image in [0, 1]: around each found object, the share of a ring 2 to 3 pixels out
  that looks more like the object than like the table or floor drawn there (shading removed,
  so shadows do not count): the largest over the objects. An object larger than any of the
  world's, or something standing beside it, spills.
- World checks: the table region must look like one surface (its pixels' mean shading-free
  distance from the table colour, with the share that is pixel-to-pixel sensor noise taken out,
  ``table_spread``), and where the view shows floor beyond the table, the two must differ
  (``edge_contrast``, their colour distance, scaled up in proportion when the scene is darker
  than ``EDGE_LIGHT``: a dim exposure shrinks every difference alike). A camera's noise and
  exposure are not the world's: a grainy or dark photo of a tabletop is still one.

- Fill, per image in [0, 1]: for each found object that stands clearly from the table (the
  shading-free distance of its drawn region's mean colour from the table's exceeds ``OUTLIER``),
  the share of its drawn pixels farther from the table colour, shading removed, than half that
  distance; the least over such objects (1 where none qualifies). An object thinner or flatter
  than the shape drawn for it (a pole read as a box, a spike read as a cone) leaves table showing
  inside its drawn silhouette.
- Outline, per image in [0, 1]: just inside and just outside the drawn table's edge, the share
  of pixels that look like the side they are drawn on (where table and floor differ clearly):
  the image's table must lie where the camera says it does. A smooth change of brightness
  across the table (a lens's vignetting, a lamp's fall-off) is divided out first
  (``flat_field``), so a darkened rim of table is not read as floor.
- Step, per image in [0, 1]: a table has an edge, so where table and floor differ the change
  happens at the drawn edge: the colour difference between the bands just inside and just
  outside it (as the outline's) over the difference between bands 2.5 to 4.5 band widths in and
  out (``STEP_FAR``). A step, sharp or blurred by a lens or motion, keeps most of its difference
  at the edge (in-world median about 0.9); a smooth change of colour across the view (a
  gradient, a blurred photo, a wall, a crop with no table edge where the camera puts one)
  shows only a fraction of it there. 1 where the far bands differ by less than
  ``STEP_CONTRAST`` (nothing to tell) or are too small.

``inference.calibration`` turns these into ``in_world``: an image is flagged when any of fit,
unexplained share, spill, fill, table spread, outline, step or edge contrast lies beyond what
99.7% of the validation images show.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from renderer.pinhole import Cameras, PerCamera
from renderer.raycast import TableView, region_map, table_mask, table_view
from renderer.scene import SceneBatch
from renderer.world import World

OUTLIER = 0.12  # shading-free colour distance (RGB in [0, 1]) beyond which a pixel is not table
UNEXPLAINED_SCALE = 0.04  # unexplained table share that counts as a whole missed object
CONTRAST_FULL = 0.10  # object-table colour distance at which contrast no longer lowers the fit
OUTLINE_CONTRAST = 4.0  # table-floor contrast, in table spreads, above which the outline is checked
FIT_SIZE = 40  # the side most checks read: 2 x 2 means of the 80 x 80 view, sensor noise halved
OUTLINE_BANDS = 40  # the outline's bands are this many times narrower than the view (and at least a pixel)
STEP_FAR = (2.5, 4.5)  # the step's far bands, from and to this many outline bands from the drawn table's edge
STEP_CONTRAST = 0.04  # colour difference of the far bands below which the step is not judged
EDGE_LIGHT = 0.4  # mean brightness of table and floor below which their contrast is scaled up (dim light)


@dataclass(frozen=True)
class Fit:
    """The fit of B answers (T slots).

    image: (B,) image fit in [0, 1] (1 = every pixel explained). objects: (B, T) object fit in
    [0, 1], 0 for absent slots. unexplained: (B,) share of the table region not explained.
    table_spread: (B,) mean shading-free distance of table pixels from the table colour, sensor
    noise discounted (``spread_beyond_noise``).
    edge_contrast: (B,) colour distance between table and floor over their exposure (their mean
    brightness over ``EDGE_LIGHT``, at most 1) (nan where no floor shows).
    spill: (B,) the largest share, over found objects, of a ring 2 to 3 pixels around the object
    that looks more like the object than like the surface drawn there, shading removed (an
    object larger than the world's, or another thing beside it).
    outline: (B,) where table and floor differ clearly, the share of the pixels just inside and
    just outside the drawn table's edge (away from objects) that look like the side they are
    drawn on; 1 where the two are too alike to tell (the image's table must lie where the
    camera says it does: a turned or cropped image, or a wrong camera, breaks it).
    step: (B,) in [0, 1], the colour difference across the drawn table's edge over the
    difference a few bands further apart (1 where those are too alike to tell): a table edge
    is a step; a smooth gradient where the camera puts the edge is not.
    fill: (B,) the least share, over found objects clearly unlike the table, of the object's
    drawn pixels that do not look like table (1 where no object qualifies): table showing inside
    a drawn silhouette (something thinner or flatter than the shape said).
    regions: the answers drawn (``Regions``), from which ``residual`` is computed when asked.
    foreign: (B,) in [0, 1], the out-of-set detector's score (``inference.foreign``: the
    network's features, not the rendering); None where the weights hold no detector.
    """

    image: torch.Tensor
    objects: torch.Tensor
    unexplained: torch.Tensor
    table_spread: torch.Tensor
    edge_contrast: torch.Tensor
    spill: torch.Tensor
    outline: torch.Tensor
    fill: torch.Tensor
    step: torch.Tensor
    regions: Regions
    foreign: torch.Tensor | None = None

    @cached_property
    def residual(self) -> torch.Tensor:
        """(B, 3, s, s) |image - region colours| where the camera saw something (the
        reconstruction's residual), computed on first use."""
        r = self.regions
        seen = r.onehot.sum(1) > 0
        return (r.img - torch.einsum("brhw,brc->bchw", r.onehot, r.means)).abs() * seen[:, None]


@dataclass(frozen=True)
class Regions:
    """The answer drawn at the fit's size: ``img`` (B, 3, s, s), ``onehot`` (B, N + 2, s, s)
    region masks (slots, table, floor; 0 where the camera saw nothing), ``area`` (B, N + 2),
    ``means`` (B, N + 2, 3) each region's mean colour in the image."""

    img: torch.Tensor
    onehot: torch.Tensor
    area: torch.Tensor
    means: torch.Tensor

    def distance(self, r: int) -> torch.Tensor:
        """(B, s, s) squared colour distance of each pixel from region ``r``'s mean."""
        return (self.img - self.means[:, r, :, None, None]).square().sum(1)


def shading_free_residual(pixels: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """(..., 3, s, s) each pixel (..., 3, s, s) minus ``colour`` (..., 3) scaled to the pixel's
    brightness (between 0.4 and 1.4 times), leading dimensions broadcast (several colours at
    once): a shadow or a brighter patch of the same surface is near 0, a surface of another hue
    or of very different brightness is not."""
    c = colour[..., None, None]
    scale = ((pixels * c).sum(-3, keepdim=True) / (c * c).sum(-3, keepdim=True).clamp_min(1e-4)).clamp(0.4, 1.4)
    return pixels - scale * c


def shading_free_distance(pixels: torch.Tensor, colour: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """(..., s, s) the length of ``shading_free_residual``; ``squared``: its square."""
    d2 = shading_free_residual(pixels, colour).square().sum(-3)
    return d2 if squared else d2.sqrt()


def spread_beyond_noise(residual: torch.Tensor, length: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far the pixels of ``mask`` (B, s, s) stray from their surface's colour, from their
    residuals (B, 3, s, s) and the residuals' lengths (B, s, s): (B,) the mean residual length,
    and (B,) the same with sensor noise discounted: scaled by the share of the mean squared
    residual that is not pixel-to-pixel noise (one less half the mean squared difference between neighbouring residuals, their
    variogram at one pixel, over the mean squared residual). Independent noise adds as much to
    both and cancels; a smooth change across the surface (a gradient, a second surface, a patch)
    is nearly all kept."""
    count = mask.sum((1, 2)).clamp_min(1)
    mean_length = (length * mask).sum((1, 2)) / count
    mean_square = (length.square() * mask).sum((1, 2)) / count
    semivariance = 0.0
    for a, b, both in ((residual[..., 1:], residual[..., :-1], mask[..., 1:] & mask[..., :-1]),
                       (residual[..., 1:, :], residual[..., :-1, :], mask[..., 1:, :] & mask[..., :-1, :])):
        semivariance = semivariance + ((a - b).square().sum(1) * both).sum((1, 2)) / both.sum((1, 2)).clamp_min(1) / 4
    structured = (1 - semivariance / mean_square.clamp_min(1e-12)).clamp(0.0, 1.0)
    return mean_length, mean_length * structured.sqrt()


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., s, s) bool masks grown by ``radius`` pixels (a square neighbourhood): an OR of
    shifted copies, along rows and then columns; beyond a radius of 3, of copies shifted by
    doubling steps (``window_or``), fewer operations for the same result. (``max_pool2d`` on the
    float mask gives the same and costs 3 to 20 times as much on a CPU, the more the larger the
    batch.)"""
    h, w = mask.shape[-2:]
    padded = F.pad(mask, (radius, radius, radius, radius))
    if radius > 3:
        return window_or(window_or(padded, 2 * radius + 1, -1), 2 * radius + 1, -2)
    rows = padded[..., :, :w].clone()
    for i in range(1, 2 * radius + 1):
        rows |= padded[..., :, i:i + w]
    grown = rows[..., :h, :].clone()
    for i in range(1, 2 * radius + 1):
        grown |= rows[..., i:i + h, :]
    return grown


def window_or(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """The OR of every ``n`` consecutive entries of bool ``x`` along ``dim`` (the result is
    ``n - 1`` shorter there): windows of 1, 2, 4, ... entries, each the OR of two shifted copies
    of the last, until they span ``n``."""
    size = x.shape[dim] - n + 1
    have = 1
    while have < n:
        step = min(have, n - have)
        length = x.shape[dim] - step
        x = x.narrow(dim, 0, length) | x.narrow(dim, step, length)
        have += step
    return x.narrow(dim, 0, size)


def as_float(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as 0 / 1 float32, by way of its bytes as uint8: on a CPU torch converts
    uint8 to float several times faster than bool (4 against 23 us for 6 x 80 x 80)."""
    return mask.view(torch.uint8).float()


def share(hits: torch.Tensor, of: torch.Tensor, empty: float = 1.0) -> torch.Tensor:
    """(...) share of the pixels of mask ``of`` (..., s, s) that are in ``hits``; ``empty`` where
    ``of`` is empty."""
    total = of.sum((-2, -1))
    inside = (hits & of).sum((-2, -1)) / total.clamp_min(1)  # 0 where ``of`` is empty
    return inside if empty == 0 else torch.where(total > 0, inside, empty)


def region_means(masks: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """(B, R, 3) the mean colour of ``img`` (B, 3, s, s) over each of ``masks`` (B, R, s, s), 0/1
    (0 where a mask is empty)."""
    return torch.bmm(masks.flatten(2), img.flatten(2).transpose(1, 2)) / masks.sum((2, 3)).clamp_min(1)[..., None]


def area_means(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, size, size) the means of ``x`` (B, C, S, S) over equal areas (``F.interpolate``'s
    "area"); a plain average pool where ``size`` divides S (the same means, cheaper)."""
    side = x.shape[-1]
    if side % size == 0 and x.shape[-2] == side:
        return F.avg_pool2d(x, side // size)
    return F.interpolate(x, size=(size, size), mode="area")


class TableViews:
    """The bare table as the last ``size`` single cameras saw it (``renderer.raycast.table_view``,
    kept in a ``renderer.pinhole.PerCamera``): a robot's camera stays put from frame to frame,
    and casting its rays is about a seventh of the fit at batch 1. Batches of several cameras
    are cast afresh. The tensors handed out are shared: read only."""

    def __init__(self, size: int = 32) -> None:
        self._kept: PerCamera[TableView] = PerCamera(size)
        self._edges: PerCamera[EdgeBands] = PerCamera(size)

    def __call__(self, world: World, cameras: Cameras) -> TableView:
        if cameras.batch_size != 1:
            return table_view(world, cameras)
        return self._kept.get(cameras, (world,), lambda: table_view(world, cameras))

    def edges(self, world: World, cameras: Cameras, coverage: torch.Tensor) -> EdgeBands:
        """The ``EdgeBands`` of the table as ``cameras`` see it, where ``coverage`` (B, 1, S, S)
        shows the image (kept per camera and coverage, as the casts are)."""
        seen = coverage[:, 0] > 0.99

        def make() -> EdgeBands:
            on_table = table_mask(world, cameras)
            return edge_bands(on_table & seen, ~on_table & seen)

        if cameras.batch_size != 1:
            return make()
        return self._edges.get(cameras, (world, np.packbits(seen.numpy(force=True)).tobytes()), make)

    def clear(self) -> None:
        self._kept.clear()
        self._edges.clear()


TABLE_VIEWS = TableViews()


def draw(scene: SceneBatch, pixels: torch.Tensor, coverage: torch.Tensor, cameras: Cameras, world: World,
         size: int) -> Regions:
    n = scene.num_slots
    img = area_means(pixels, size)
    seen = area_means(coverage, size)[:, 0] > 0.99
    cams = cameras.resized(size, size).to(pixels.device)
    region = region_map(scene, world, cams, TABLE_VIEWS(world, cams))
    onehot = F.one_hot(region, n + 2).permute(0, 3, 1, 2).float() * seen[:, None].float()
    area = onehot.sum((2, 3))
    return Regions(img, onehot, area, region_means(onehot, img))


def surface_distances(r: Regions, n: int) -> torch.Tensor:
    """(B, 2, s, s) each pixel's squared shading-free distance from the table's colour and from
    the floor's (regions ``n`` and ``n + 1`` of ``r``)."""
    return shading_free_distance(r.img[:, None], r.means[:, n:n + 2], squared=True)


class ObjectPixels(NamedTuple):
    """Each slot's drawn pixels and every pixel's squared colour distances, as the object checks
    read them. masks: (B, T, s, s) each slot's drawn pixels; on_table, floor: (B, 1, s, s);
    d_table: (B, 1, s, s) from the table's mean; d_own: (B, T, s, s) from each slot's mean;
    d_surface: (B, 1, s, s) from the surface drawn there (table or floor), shading removed
    (shadows are surface);
    real: (B, T) present slots with drawn pixels."""

    masks: torch.Tensor
    on_table: torch.Tensor
    floor: torch.Tensor
    d_table: torch.Tensor
    d_own: torch.Tensor
    d_surface: torch.Tensor
    real: torch.Tensor


def object_pixels(scene: SceneBatch, r: Regions, d_surfaces: torch.Tensor | None = None) -> ObjectPixels:
    """``d_surfaces``: (B, 2, s, s) the squared shading-free distances from the table's and the
    floor's colours (``surface_distances``), where already computed."""
    n = scene.num_slots
    on_table, floor = r.onehot[:, n:n + 1] > 0, r.onehot[:, n + 1:n + 2] > 0
    if d_surfaces is None:
        d_surfaces = surface_distances(r, n)
    d_surface = torch.where(floor, d_surfaces[:, 1:], d_surfaces[:, :1])
    return ObjectPixels(r.onehot[:, :n] > 0, on_table, floor, r.distance(n)[:, None],
                        (r.img[:, None] - r.means[:, :n, :, None, None]).square().sum(2), d_surface,
                        scene.present & (r.area[:, :n] > 0))


def object_fits(scene: SceneBatch, r: Regions, d_surfaces: torch.Tensor | None = None,
                near: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) object fits (inside agreement x ring agreement x contrast) and (B,) spill, all
    slots at once (``d_surfaces``: as ``object_pixels``; ``near``: the slots' drawn pixels grown
    by a pixel, ``dilate(masks, 1)``, where already computed)."""
    n = scene.num_slots
    masks, on_table, floor, d_table, d_own, d_surface, real = object_pixels(scene, r, d_surfaces)
    near = dilate(masks, 1) if near is None else near
    around = dilate(near, 2)  # grown by 3 in all: a square grown twice grows by the sum
    # the three shares at once: own pixels like their object, the table ring just outside like
    # table, the ring 2 to 3 pixels out like the object (spill)
    of = torch.stack([masks, near & on_table, around & ~near & (on_table | floor)], 2)  # (B, T, 3, s, s)
    closer = d_own < d_table
    total = of.sum((-2, -1))
    inside, outside, spill = ((torch.stack([closer, ~closer, d_own < d_surface], 2) & of).sum((-2, -1))
                              / total.clamp_min(1)).unbind(-1)
    outside = torch.where(total[..., 1] > 0, outside, 1.0)  # no table around: nothing against it
    contrast = ((r.means[:, :n] - r.means[:, n:n + 1]).norm(dim=-1) / CONTRAST_FULL).clamp(max=1.0)
    fits = torch.where(real, inside * outside * contrast, 0.0)
    return fits, torch.where(real, spill, 0.0).amax(1)


@lru_cache(maxsize=4)
def quadratic_terms(size: int) -> torch.Tensor:
    """(s * s, 6) 1, u, v, u^2, v^2, uv at each pixel of an s x s view, u and v in [-1, 1]."""
    v, u = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    u, v = u.flatten(), v.flatten()
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v], 1)


@lru_cache(maxsize=4)
def quadratic_products(size: int) -> torch.Tensor:
    """(s * s, 36) the products of each pair of ``quadratic_terms`` at each pixel: one matrix
    product with a mask then sums the least-squares normal equations over the mask's pixels."""
    x = quadratic_terms(size)
    return (x[:, :, None] * x[:, None, :]).reshape(-1, 36)


def flat_field(img: torch.Tensor, surface: torch.Tensor) -> torch.Tensor:
    """(B, 3, s, s) ``img`` with a smooth change of light across the view divided out: the
    brightness of the pixels of ``surface`` (B, s, s), one material, fitted by a quadratic in
    the pixel coordinates (least squares), as a gain of mean 1 over them, at most halving or
    doubling. Vignetting and a light's fall-off darken a surface toward the view's edges
    without changing what it is."""
    b, _, s, _ = img.shape
    x = quadratic_terms(s).to(img.device)
    w = as_float(surface.reshape(b, -1))
    count = w.sum(1, keepdim=True)
    y = img.mean(1).reshape(b, -1)
    normal = (w @ quadratic_products(s).to(img.device)).reshape(b, 6, 6) + 1e-3 * torch.eye(6, device=img.device)
    beta = torch.linalg.solve(normal, (w * y) @ x)
    light = beta @ x.T  # (B, s * s)
    level = (light * w).sum(1, keepdim=True) / count.clamp_min(1)
    gain = (light / level.clamp_min(1e-3)).clamp(0.5, 2.0)
    gain = torch.where(count >= 24, gain, torch.ones_like(gain))  # too little surface to fit
    return img / gain.reshape(b, 1, s, s)


class EdgeBands(NamedTuple):
    """Where the outline and the step look, (B, S, S) bool each, before any object is drawn:
    the seen ``table`` and ``floor``; the bands just ``inner`` and ``outer`` of the table's edge
    (``OUTLINE_BANDS``: 1 / 40 of the view's side wide, at least a pixel); the step's far bands,
    ``far_inner`` and ``far_outer``, ``STEP_FAR`` band widths from the edge. For a view network
    they depend on the camera and the view's coverage alone (``TableViews.edges``)."""

    table: torch.Tensor
    floor: torch.Tensor
    inner: torch.Tensor
    outer: torch.Tensor
    far_inner: torch.Tensor
    far_outer: torch.Tensor


def edge_bands(table: torch.Tensor, floor: torch.Tensor) -> EdgeBands:
    """``EdgeBands`` from the table and floor seen (B, S, S) bool."""
    band = max(1, table.shape[-1] // OUTLINE_BANDS)
    lo, hi = (max(band + 1, round(f * band)) for f in STEP_FAR)
    near = dilate(torch.stack([floor, table], 1), band)  # grown together: half the operations
    start = dilate(near, lo - band)
    stop = dilate(start, hi - lo)
    (near_floor, near_table), (start_floor, start_table), (stop_floor, stop_table) = (
        near.unbind(1), start.unbind(1), stop.unbind(1))
    return EdgeBands(table, floor, table & near_floor, floor & near_table, table & stop_floor & ~start_floor,
                     floor & stop_table & ~start_table)


def outline_agreement(img: torch.Tensor, bands: EdgeBands, objects: torch.Tensor,
                      spread: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Fit.outline`` and ``Fit.step`` from an image (B, 3, s, s), where the camera puts the
    table's edge (``bands``) and where the answer draws objects (B, s, s) bool: the bands either
    side of the edge, away from objects (and their shadows: 3 pixels), each pixel nearer the
    colour of its side's mean, in the image with the table's smooth change of light divided out
    (``flat_field``). Checked where the two means differ by more than ``OUTLINE_CONTRAST`` times
    ``spread``, the table's mean distance from its colour, noise included (noise blurs the
    comparison)."""
    clear_of_objects = ~dilate(objects, 3)
    inner, outer = bands.inner & clear_of_objects, bands.outer & clear_of_objects
    img = flat_field(img, bands.table & clear_of_objects)
    # the means of table and floor (objects cut out) and of the step's four bands, in one product
    masks = torch.stack([bands.table & ~objects, bands.floor & ~objects, inner, outer,
                         bands.far_inner & clear_of_objects, bands.far_outer & clear_of_objects], 1)
    weights = as_float(masks)
    means, counts = region_means(weights, img), weights.sum((2, 3))
    t_mean, f_mean = means[:, 0], means[:, 1]
    # nearer the floor's mean than the table's: |x - f|^2 < |x - t|^2, i.e. x . (f - t) beyond the midpoint's
    midpoint = (f_mean.square() - t_mean.square()).sum(-1) / 2
    toward_floor = torch.einsum("bchw,bc->bhw", img, f_mean - t_mean) - midpoint[:, None, None]
    hits = (inner & (toward_floor < 0)) | (outer & (toward_floor > 0))
    agree = share(hits, inner | outer)
    contrast = (f_mean - t_mean).norm(dim=-1)
    clear = (contrast > OUTLINE_CONTRAST * spread.clamp_min(0.01)) & (counts[:, 2:4].sum(1) >= 8)
    return torch.where(clear, agree, 1.0), edge_step(means[:, 2:], counts[:, 2:])


def edge_step(means: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``Fit.step`` from the flat-fielded image's mean colours (B, 4, 3) over the four bands,
    kept clear of objects: just inside and just outside the drawn edge, and the far ones
    inside and outside; and their pixel counts (B, 4)."""
    near = (means[:, 0] - means[:, 1]).norm(dim=-1)
    far = (means[:, 2] - means[:, 3]).norm(dim=-1)
    judged = (far > STEP_CONTRAST) & (counts >= 8).all(1)
    return torch.where(judged, (near / far.clamp_min(1e-6)).clamp(max=1.0), 1.0)


def outline_at_full_size(r: Regions, n: int, objects: torch.Tensor, pixels: torch.Tensor, coverage: torch.Tensor,
                         cameras: Cameras, world: World, spread: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``outline_agreement`` on the view as the network read it (``pixels``, S x S): the table's
    edge where the camera puts it at S (``TableViews.edges``), the objects (only kept clear of:
    ``objects``, B x s x s, where the regions ``r`` at the fit's size draw any) enlarged."""
    s = pixels.shape[-1]
    if s == objects.shape[-1]:
        return outline_agreement(r.img, edge_bands(r.onehot[:, n] > 0, r.onehot[:, n + 1] > 0), objects, spread)
    scale = s // objects.shape[-1]
    if scale * objects.shape[-1] == s:  # a whole multiple: each pixel repeated
        b, h, w = objects.shape
        objects = objects[:, :, None, :, None].expand(b, h, scale, w, scale).reshape(b, s, s)
    else:
        objects = F.interpolate(objects[:, None].float(), size=(s, s), mode="nearest")[:, 0] > 0
    return outline_agreement(pixels, TABLE_VIEWS.edges(world, cameras.to(pixels.device), coverage), objects, spread)


def object_fill(scene: SceneBatch, r: Regions, d_free: torch.Tensor) -> torch.Tensor:
    """``Fit.fill`` from the regions and every pixel's shading-free distance from the table
    colour, ``d_free`` (B, s, s)."""
    n = scene.num_slots
    contrast = shading_free_distance(r.means[:, :n].transpose(1, 2)[..., None], r.means[:, n])[..., 0]  # (B, T)
    level = (contrast / 2).clamp_min(OUTLIER / 2)
    filled = share(d_free[:, None] > level[..., None, None], r.onehot[:, :n] > 0)
    clear = scene.present & (r.area[:, :n] > 0) & (contrast > OUTLIER)
    return torch.where(clear, filled, torch.ones_like(filled)).amin(1)


def fit_answers(scene: SceneBatch, pixels: torch.Tensor, coverage: torch.Tensor, cameras: Cameras,
                world: World, size: int = FIT_SIZE) -> Fit:
    """The fit of ``scene`` (B answers, T slots) to the images the network read: ``pixels``
    (B, 3, S, S) in [0, 1] and ``coverage`` (B, 1, S, S) 0/1, seen by ``cameras`` (S x S).
    ``size``: the side most checks read (area means of the view; a divisor of S keeps pixel
    noise independent from pixel to pixel, as ``spread_beyond_noise`` assumes); the outline
    reads the view at S itself."""
    n = scene.num_slots
    r = draw(scene, pixels, coverage, cameras, world, size)
    table = r.means[:, n]
    surfaces = shading_free_residual(r.img[:, None], r.means[:, n:n + 2])  # (B, 2, 3, s, s): from table, floor
    free = surfaces[:, 0]
    d2_surfaces = surfaces.square().sum(2)
    masks = r.onehot[:, :n] > 0
    near = dilate(masks, 1)
    objects, spill = object_fits(scene, r, d2_surfaces, near)

    # the table away from every object (2 pixels clear): what it leaves unexplained, how uniform it is
    drawn = masks.any(1)
    bare = (r.onehot[:, n] > 0) & ~dilate(near.any(1), 1)
    d_free = d2_surfaces[:, 0].sqrt()
    unexplained = share(d_free > OUTLIER, bare, 0.0)
    rough, spread = spread_beyond_noise(free, d_free, bare)
    has_floor = r.area[:, n + 1] >= 4
    brightness = (r.means[:, n + 1] + table).mean(-1) / 2
    exposure = (brightness / EDGE_LIGHT).clamp(0.1, 1.0)
    edge = torch.where(has_floor, (r.means[:, n + 1] - table).norm(dim=-1) / exposure,
                       torch.full_like(spread, float("nan")))

    worst = torch.where(scene.present, objects, torch.ones_like(objects)).amin(1)
    image = worst * (1 - unexplained / UNEXPLAINED_SCALE).clamp(0.0, 1.0)
    outline, step = outline_at_full_size(r, n, drawn, pixels, coverage, cameras, world, rough)
    return Fit(image, objects, unexplained, spread, edge, spill, outline, object_fill(scene, r, d_free), step, r)


def residual_png(residual: torch.Tensor, scale: int = 4) -> str:
    """A residual image (3, s, s) in [0, 1] -> base64 PNG text, ``scale`` times larger (nearest),
    brightened so that a residual of 0.25 is white."""
    rgb = (residual.detach().cpu().clamp(0, 0.25) * (255 / 0.25)).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    im = Image.fromarray(rgb)
    im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
