"""The scene prior p(n, z): how many objects, which, and where.

count ~ Uniform(allowed counts, by default 0..N); per object shape ~ Uniform(shapes),
colour ~ Uniform(colours), (x, y) ~ Uniform(central square), yaw ~ Uniform[-pi, pi); z is the
shape's resting height. Footprints never intersect: each shape's footprint is covered by a disc
(``MeshLibrary.footprint_radius``), and positions are redrawn (vectorised rejection) until every
pair of discs is apart. Present objects fill the first ``count`` slots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from renderer.meshes import mesh_library
from renderer.pinhole import Cameras
from renderer.scene import SceneBatch
from renderer.world import World

MAX_REJECTION_ROUNDS = 1000
MAX_VIEW_ROUNDS = 200


def sample_scenes(world: World, batch: int, seed: int | None = None,
                  generator: torch.Generator | None = None,
                  counts: int | Sequence[int] | None = None,
                  cameras: Sequence[Cameras] = ()) -> SceneBatch:
    """Draw ``batch`` scenes from the prior (on the CPU).

    seed / generator: exactly one seeds the draw; the same seed gives the same scenes.
    counts: the object counts to draw uniformly from; an int K means exactly K objects.
        Default: 0..world.max_objects.
    cameras: each a batch of ``batch`` cameras; when given, every object lies wholly inside
        every one of these images (``in_view``), positions being redrawn until it does. An
        object that finds no place in view after ``MAX_VIEW_ROUNDS`` is left out, so a camera
        that sees little of the table gets fewer objects (with the default cameras this is rare).
    """
    if (seed is None) == (generator is None):
        raise ValueError("pass exactly one of seed= or generator=")
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    n = world.max_objects
    allowed = list(range(n + 1)) if counts is None else ([counts] if isinstance(counts, int) else list(counts))
    if not allowed or any(not 0 <= k <= n for k in allowed):
        raise ValueError(f"counts must lie in 0..{n} (world.max_objects), got {allowed}")

    lib = mesh_library(world)
    count = torch.tensor(allowed)[torch.randint(len(allowed), (batch,), generator=g)]
    present = torch.arange(n)[None, :] < count[:, None]
    shape = torch.randint(len(world.shapes), (batch, n), generator=g)
    color = torch.randint(len(world.colors), (batch, n), generator=g)
    yaw = (torch.rand(batch, n, generator=g) * 2 - 1) * math.pi
    radius = lib.footprint_radius[shape]  # (B, N)

    e = world.placement_half_extent
    z = torch.tensor([s.resting_z for s in world.shapes])[shape]
    xy = (torch.rand(batch, n, 2, generator=g) * 2 - 1) * e
    rounds = MAX_VIEW_ROUNDS if cameras else MAX_REJECTION_ROUNDS
    for _ in range(rounds):
        bad = _overlapping(xy, radius, present)  # (B, N): slot collides with an earlier one
        for cams in cameras:
            bad = bad | (present & ~in_view(xy, z, radius, cams))
        if not bad.any():
            break
        fresh = (torch.rand(batch, n, 2, generator=g) * 2 - 1) * e
        xy = torch.where(bad[..., None], fresh, xy)
    else:
        if not cameras:
            raise ValueError("could not place non-overlapping objects: placement area too small for N")
        present, shape, color, xy, yaw, z = _drop_slots(bad, present, shape, color, xy, yaw, z)

    position = torch.cat([xy, z[..., None]], dim=-1)
    # Padding slots: zeros everywhere, so a batch is identical however it was drawn.
    position = position * present[..., None]
    yaw = yaw * present
    shape = shape * present
    color = color * present
    return SceneBatch(present, shape, color, position.float(), yaw.float())


def in_view(xy: torch.Tensor, z: torch.Tensor, radius: torch.Tensor, cameras: Cameras,
            margin_px: float = 2.0) -> torch.Tensor:
    """(B, N) bool: an object at table point ``xy`` (B, N, 2) with centre height ``z`` (B, N)
    and footprint radius (B, N) lies wholly inside the image, ``margin_px`` from its border, and
    in front of the camera: tested on the 8 corners of the box of half-width radius and height
    2 z that holds it at any yaw."""
    corner = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (0, 1)], dtype=xy.dtype)
    pts = torch.cat([xy, torch.zeros_like(z)[..., None]], -1)[:, :, None, :] \
        + corner * torch.stack([radius, radius, 2 * z], -1)[:, :, None, :]  # (B, N, 8, 3)
    uv, depth = cameras.project(pts)
    inside = (uv[..., 0] >= margin_px) & (uv[..., 0] <= cameras.width - margin_px) \
        & (uv[..., 1] >= margin_px) & (uv[..., 1] <= cameras.height - margin_px) & (depth > 0.05)
    return inside.all(dim=-1)


def _drop_slots(drop: torch.Tensor, present: torch.Tensor, *fields: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mark ``drop`` (B, N) slots absent and move the present ones first, in their order."""
    present = present & ~drop
    order = torch.sort((~present).to(torch.int8), dim=1, stable=True).indices
    out = [torch.gather(present, 1, order)]
    for f in fields:
        idx = order.reshape(*order.shape, *([1] * (f.dim() - 2))).expand_as(f)
        out.append(torch.gather(f, 1, idx))
    return tuple(out)


def _overlapping(xy: torch.Tensor, radius: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: slot j is present and its disc meets the disc of a present slot i < j."""
    dist = (xy[:, :, None, :] - xy[:, None, :, :]).norm(dim=-1)  # (B, N, N)
    reach = radius[:, :, None] + radius[:, None, :]
    n = xy.shape[1]
    earlier = torch.ones(n, n, dtype=torch.bool).tril(-1)  # [j, i]: i < j
    both = present[:, :, None] & present[:, None, :]
    return ((dist < reach) & earlier & both).any(dim=2)


def footprints_overlap(scene: SceneBatch, world: World) -> torch.Tensor:
    """(B,) bool: whether any two present objects' footprint discs intersect."""
    scene = scene.blank_absent()  # absent slots may hold out-of-range indices
    radius = mesh_library(world).footprint_radius[scene.shape]
    return _overlapping(scene.position[..., :2], radius, scene.present).any(dim=1)


def object_log_density(xy: torch.Tensor, has_yaw: torch.Tensor, world: World, edge_m: float = 0.02) -> torch.Tensor:
    """log p(shape, colour, x, y, yaw) of one object under the prior, any leading shape (...).

    xy: (..., 2) table position, metres. has_yaw: (...) float, 1 where the shape's yaw is
    observable (the others carry no yaw term). Shape and colour are uniform; (x, y) is uniform on
    the placement square with a Gaussian fall-off of ``edge_m`` outside it (so a gradient brings a
    stray object back instead of meeting -inf; ``sample_scenes`` never draws there); yaw is
    uniform on [-pi, pi). The non-overlap of footprints is not part of this density.
    """
    e = world.placement_half_extent
    outside = (xy.abs() - e).clamp_min(0.0) / edge_m
    return -(math.log(len(world.shapes)) + math.log(len(world.colors)) + math.log((2 * e) ** 2)
             + has_yaw * math.log(2 * math.pi) + 0.5 * (outside**2).sum(-1))
