"""Which object, if any, each pixel sees: exact ray casting of the world's convex shapes.

Every shape of the world is convex, so each is the intersection of the half-spaces of its
faces' planes. A pixel's ray enters an object where it crosses the last of the planes it
enters through and leaves at the first it exits through; it hits the object when it enters
before it leaves, in front of the camera. Spheres are cast as the smooth ellipsoid their
bounding box holds (what a camera sees; their mesh has many planes). The nearest hit wins, then the table top, then
nothing (the floor beyond the table). Batched tensor arithmetic, no rasteriser: for small
images it is several times faster than PyTorch3D's (``region_map`` is what the service
computes with every answer, ``inference.fit``), and it agrees with it pixel for pixel away
from silhouette edges (``tests/test_trust.py``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch

from renderer.meshes import mesh_library
from renderer.pinhole import Cameras
from renderer.scene import SceneBatch
from renderer.world import World


@lru_cache(maxsize=8)
def convex_planes(world: World) -> torch.Tensor:
    """(S, P, 4) each shape's distinct face planes as (nx, ny, nz, d), object frame, outward
    unit normals: a point x is inside when n . x <= d for every plane. Shapes with fewer than
    P planes are padded with (0, 0, 0, 1), which every point satisfies. ValueError if a shape's
    mesh is not convex (a vertex outside one of its face planes)."""
    lib = mesh_library(world)
    per_shape = []
    for s in range(len(world.shapes)):
        if world.shapes[s].name == "sphere":  # cast as an ellipsoid (``object_depths``)
            per_shape.append(torch.zeros(0, 4))
            continue
        v = lib.verts[s, : lib.num_verts[s]].double()
        f = lib.faces[s, : lib.num_faces[s]]
        tri = v[f]  # (F, 3, 3)
        n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        d = (n * tri[:, 0]).sum(-1)
        planes = torch.unique(torch.cat([n, d[:, None]], -1).mul(1e5).round().div(1e5), dim=0)
        if ((v @ planes[:, :3].T) - planes[:, 3] > 1e-4).any():
            raise ValueError(f"shape {world.shapes[s].name} is not convex: ray casting cannot draw it")
        per_shape.append(planes.float())
    width = max(len(p) for p in per_shape)
    pad = torch.tensor([0.0, 0.0, 0.0, 1.0])
    return torch.stack([torch.cat([p, pad.expand(width - len(p), 4)]) for p in per_shape])


@lru_cache(maxsize=8)
def bounding_radii(world: World) -> torch.Tensor:
    """(S,) each shape's bounding-sphere radius about its object-frame origin (the farthest
    mesh vertex; a sphere's largest semi-axis), with 1% to spare."""
    lib = mesh_library(world)
    radii = [max(world.shapes[s].size) / 2 if world.shapes[s].name == "sphere"
             else float(lib.verts[s, : lib.num_verts[s]].norm(dim=-1).max()) for s in range(len(world.shapes))]
    return torch.tensor(radii) * 1.01


@lru_cache(maxsize=16)
def pixel_centres(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, H * W, 2) pixel centres (u, v), row-major; kept per size and device (read only)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                          torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    return torch.stack([u, v], -1).reshape(1, -1, 2).to(device)


def pixel_rays(cameras: Cameras) -> torch.Tensor:
    """(B, H * W, 3) world-frame rays through pixel centres, row-major, optical z = 1."""
    uv = pixel_centres(cameras.height, cameras.width, cameras.position.device)
    return cameras.rays(uv.expand(cameras.batch_size, -1, -1))


def object_depths(scene: SceneBatch, world: World, cameras: Cameras, rays: torch.Tensor) -> torch.Tensor:
    """(B, T, P) depth (optical z) at which each pixel's ray enters each object; inf on a miss
    or an absent slot. Only present slots are cast."""
    return ray_entries(scene, world, cameras.position[:, None], rays)


def ray_entries(scene: SceneBatch, world: World, origins: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """(B, T, P) the t >= 0 at which ray p, ``origins`` + t ``rays``, enters each object (0 when
    it starts inside); inf on a miss or an absent slot. origins: (B, P, 3), or (B, 1, 3) for rays
    that share one (a camera's); rays: (B, P, 3), world frame. Only present slots are cast."""
    b, t = scene.present.shape
    depth = torch.full((b, t, rays.shape[1]), float("inf"), device=rays.device)
    bi, ti = torch.nonzero(scene.present, as_tuple=True)
    if not len(bi):
        return depth
    shape = scene.shape[bi, ti]
    rot = scene.rotation()[bi, ti]  # (K, 3, 3) world_from_object
    origin = (origins[bi] - scene.position[bi, ti][:, None]) @ rot  # (K, P or 1, 3), object frame
    direction = rays[bi] @ rot  # (K, P, 3)
    # only rays that pass within an object's bounding sphere can hit it: cast those pairs alone
    along = (direction * origin).sum(-1)
    miss2 = (origin * origin).sum(-1) - along.square() / (direction * direction).sum(-1)
    k, p = torch.nonzero(miss2 <= bounding_radii(world).to(rays.device)[shape].square()[:, None], as_tuple=True)
    if not len(k):
        return depth
    o, d = origin.expand_as(direction)[k, p], direction[k, p]  # (M, 3) each candidate pair
    planes = convex_planes(world).to(rays.device)[shape[k]]  # (M, Q, 4)
    normal, offset = planes[..., :3], planes[..., 3]
    denom = torch.einsum("mi,mqi->mq", d, normal)
    denom = torch.where(denom.abs() < 1e-9, torch.full_like(denom, 1e-9), denom)  # parallel: a plane far off
    hit_t = (offset - torch.einsum("mi,mqi->mq", o, normal)) / denom  # (d - n . c) / (n . ray)
    entering = denom < 0
    enter = torch.where(entering, hit_t, -float("inf")).amax(-1)
    leave = torch.where(entering, float("inf"), hit_t).amin(-1)
    sphere = [i for i, sp in enumerate(world.shapes) if sp.name == "sphere"]
    if sphere and (shape == sphere[0]).any():
        enter, leave = ellipsoid_span(shape[k] == sphere[0], world.shapes[sphere[0]].size, o, d, enter, leave)
    depth[bi[k], ti[k], p] = torch.where((enter <= leave) & (leave > 0), enter.clamp_min(0),
                                         torch.full_like(enter, float("inf")))
    return depth


def ellipsoid_span(mine: torch.Tensor, size: tuple[float, float, float], origin: torch.Tensor,
                   direction: torch.Tensor, enter: torch.Tensor, leave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``enter`` and ``leave`` (M,) with the rays of objects ``mine`` (M,) replaced by where each
    meets the ellipsoid inscribed in a box of ``size`` (object frame ray origins ``origin`` (M, 3)
    and ``direction`` (M, 3)); a miss enters at +inf."""
    semi = torch.tensor(size, device=origin.device) / 2
    o, d = origin / semi, direction / semi
    a = (d * d).sum(-1)
    b = 2 * (o * d).sum(-1)
    c = (o * o).sum(-1) - 1
    disc = b * b - 4 * a * c
    root = disc.clamp_min(0).sqrt()
    t0, t1 = (-b - root) / (2 * a), (-b + root) / (2 * a)
    t0 = torch.where(disc >= 0, t0, torch.full_like(t0, float("inf")))
    return torch.where(mine, t0, enter), torch.where(mine, t1, leave)


class TableView(NamedTuple):
    """What cameras see before any object is placed: ``rays`` (B, H * W, 3) through the pixel
    centres (``pixel_rays``) and where each meets the table top, ``table`` (B, H * W)
    (``table_depths``). It depends on the cameras alone, so one cast serves every answer drawn
    from the same cameras."""

    rays: torch.Tensor
    table: torch.Tensor


def table_view(world: World, cameras: Cameras) -> TableView:
    rays = pixel_rays(cameras)
    return TableView(rays, table_depths(world, cameras, rays))


def region_map(scene: SceneBatch, world: World, cameras: Cameras, bare: TableView | None = None) -> torch.Tensor:
    """(B, H, W) int64 what each pixel of ``cameras`` sees: slot 0..N-1 for an object, N for
    the table top, N + 1 beyond it. ``bare``: the cameras' ``table_view``, when already cast."""
    n = scene.num_slots
    rays, table = bare if bare is not None else table_view(world, cameras)
    depth = object_depths(scene, world, cameras, rays)  # (B, T, P); absent slots are not cast
    nearest, which = torch.cat([depth, table[:, None]], 1).min(1)
    region = torch.where(torch.isinf(nearest), torch.full_like(which, n + 1), which)
    return region.reshape(cameras.batch_size, cameras.height, cameras.width)


def table_depths(world: World, cameras: Cameras, rays: torch.Tensor) -> torch.Tensor:
    """(B, P) where each ray (B, P, 3) meets the table top (the plane z = 0 within the table's
    square, in front of a camera looking down); inf where it does not."""
    t, on_table = table_crossing(world, cameras.position[:, None, :], rays)
    return torch.where(on_table, t, torch.full_like(t, float("inf")))


def table_crossing(world: World, origins: torch.Tensor, rays: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For rays (..., 3) from ``origins`` (broadcast): (...) the t at which each meets the plane
    z = 0 (a ray that runs level or upward is clamped to one that falls slightly), and (...) bool
    whether it falls to the table top within its square. Each axis compared apart: one
    comparison over the last dimension costs more than both."""
    t = -origins[..., 2] / rays[..., 2].clamp_max(-1e-9)
    half = world.table_size / 2
    return t, ((rays[..., 2] < -1e-9) & ((origins[..., 0] + t * rays[..., 0]).abs() <= half)
               & ((origins[..., 1] + t * rays[..., 1]).abs() <= half))


def table_mask(world: World, cameras: Cameras, bare: TableView | None = None) -> torch.Tensor:
    """(B, H, W) bool: the pixels of ``cameras`` whose ray meets the table top (objects ignored).
    ``bare``: the cameras' ``table_view``, when already cast; without it, cameras with no lens
    distortion are solved by rows and columns (``pinhole_table_mask``)."""
    if bare is None and cameras.distortion is None:
        return pinhole_table_mask(world, cameras)
    depth = (bare if bare is not None else table_view(world, cameras)).table
    return torch.isfinite(depth).reshape(cameras.batch_size, cameras.height, cameras.width)


def pinhole_table_mask(world: World, cameras: Cameras) -> torch.Tensor:
    """``table_mask`` for ideal pinholes, without casting a ray per pixel: a pixel's ray is the
    sum of a part that depends on its column and one that depends on its row, so the rays come
    from one broadcast sum of the two (about a third of the cost of ``table_view`` at 80 x 80)."""
    if cameras.distortion is not None:
        raise ValueError("pinhole_table_mask: these cameras have lens distortion (use table_mask)")
    device = cameras.position.device
    rot, focal, principal = cameras.rotation, cameras.focal, cameras.principal
    u = (torch.arange(cameras.width, dtype=torch.float32, device=device) + 0.5 - principal[:, :1]) / focal[:, :1]
    v = (torch.arange(cameras.height, dtype=torch.float32, device=device) + 0.5 - principal[:, 1:]) / focal[:, 1:]
    across = rot[:, None, :, 0] * u[..., None] + rot[:, None, :, 2]  # (B, W, 3): the column's part and the axis
    down = rot[:, None, :, 1] * v[..., None]  # (B, H, 3): the row's part
    rays = down[:, :, None, :] + across[:, None, :, :]  # (B, H, W, 3), optical z = 1 as pixel_rays
    return table_crossing(world, cameras.position[:, None, None, :], rays)[1]
