"""Primitive meshes, built once per world and padded to one common size.

Every mesh is watertight with outward (counter-clockwise seen from outside) winding, centred
on its bounding box, in metres. Shading is flat (one normal per face), so vertices are shared
between faces and polygon counts stay low: CPU rasterisation costs faces x pixels.

To render a batch without rebuilding topology per image, all templates are padded to the same
vertex count V and face count F: padding vertices sit at the origin and padding faces are
degenerate ``(0, 0, 0)`` triangles, which have no area and never cover a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from renderer.world import ShapeSpec, World


def _cuboid(sx: float, sy: float, sz: float) -> tuple[list, list]:
    x, y, z = sx / 2, sy / 2, sz / 2
    verts = [(-x, -y, -z), (x, -y, -z), (x, y, -z), (-x, y, -z),
             (-x, -y, z), (x, -y, z), (x, y, z), (-x, y, z)]
    quads = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    return verts, _triangulate(quads)


def _wedge(sx: float, sy: float, sz: float) -> tuple[list, list]:
    """Right-triangle prism: a vertical face at -x, a slope falling toward +x."""
    x, y, z = sx / 2, sy / 2, sz / 2
    verts = [(-x, -y, -z), (x, -y, -z), (-x, -y, z), (-x, y, -z), (x, y, -z), (-x, y, z)]
    faces = [(0, 1, 2), (3, 5, 4)]  # triangular ends (-y, +y)
    faces += _triangulate([(0, 3, 4, 1), (0, 2, 5, 3), (1, 4, 5, 2)])  # bottom, back, slope
    return verts, faces


def _ring(n: int, rx: float, ry: float, z: float) -> list:
    return [(rx * math.cos(2 * math.pi * k / n), ry * math.sin(2 * math.pi * k / n), z) for k in range(n)]


def _cylinder(sx: float, sy: float, sz: float, segments: int = 16) -> tuple[list, list]:
    n = segments
    verts = _ring(n, sx / 2, sy / 2, -sz / 2) + _ring(n, sx / 2, sy / 2, sz / 2)
    verts += [(0.0, 0.0, -sz / 2), (0.0, 0.0, sz / 2)]
    bottom, top = 2 * n, 2 * n + 1
    faces = []
    for k in range(n):
        k1 = (k + 1) % n
        faces += [(k, k1, n + k1), (k, n + k1, n + k), (bottom, k1, k), (top, n + k, n + k1)]
    return verts, faces


def _cone(sx: float, sy: float, sz: float, segments: int = 16) -> tuple[list, list]:
    n = segments
    verts = _ring(n, sx / 2, sy / 2, -sz / 2) + [(0.0, 0.0, -sz / 2), (0.0, 0.0, sz / 2)]
    bottom, apex = n, n + 1
    faces = []
    for k in range(n):
        k1 = (k + 1) % n
        faces += [(k, k1, apex), (bottom, k1, k)]
    return verts, faces


def _sphere(sx: float, sy: float, sz: float, segments: int = 12, rings: int = 6) -> tuple[list, list]:
    verts = [(0.0, 0.0, -sz / 2)]
    for r in range(1, rings):
        phi = math.pi * r / rings - math.pi / 2
        verts += _ring(segments, sx / 2 * math.cos(phi), sy / 2 * math.cos(phi), sz / 2 * math.sin(phi))
    verts.append((0.0, 0.0, sz / 2))
    south, north = 0, len(verts) - 1
    faces = []
    for k in range(segments):
        k1 = (k + 1) % segments
        faces.append((south, 1 + k1, 1 + k))
        for r in range(rings - 2):
            a, b = 1 + r * segments, 1 + (r + 1) * segments
            faces += [(a + k, a + k1, b + k1), (a + k, b + k1, b + k)]
        last = 1 + (rings - 2) * segments
        faces.append((last + k, last + k1, north))
    return verts, faces


def _triangulate(quads: list) -> list:
    return [tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))]


_BUILDERS = {"cube": _cuboid, "box": _cuboid, "wedge": _wedge,
             "sphere": _sphere, "cylinder": _cylinder, "cone": _cone}


def _detail_args(name: str, detail: int) -> dict:
    """Tessellation of curved shapes at ``detail`` level 1, 2, 3...: 1 is the world's meshes."""
    if detail < 1:
        raise ValueError(f"detail must be >= 1, got {detail}")
    if name == "sphere":
        return {"segments": 12 + 8 * (detail - 1), "rings": 6 + 4 * (detail - 1)}
    if name in ("cylinder", "cone"):
        return {"segments": 16 + 8 * (detail - 1)}
    return {}


def primitive(spec: ShapeSpec, detail: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mesh of one shape: verts (V, 3) float32 metres, faces (F, 3) int64."""
    if spec.name not in _BUILDERS:
        raise ValueError(f"no mesh builder for shape {spec.name!r}; known: {sorted(_BUILDERS)}")
    verts, faces = _BUILDERS[spec.name](*spec.size, **_detail_args(spec.name, detail))
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64)


def corner_normals(spec: ShapeSpec, verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3, 3) unit normal at each corner of each face, object frame, for smooth shading:
    the curved surface's true normal on curved faces (sphere; the sides of cylinder and
    cone), the face's own normal on flat ones."""
    tri = verts[faces]  # (F, 3, 3)
    flat = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    flat = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = flat[:, None, :].expand(-1, 3, -1).clone()
    a, b, c = (x / 2 for x in spec.size)
    if spec.name == "sphere":  # gradient of the ellipsoid
        out = tri / torch.tensor([a * a, b * b, c * c])
    elif spec.name in ("cylinder", "cone"):
        side = flat[:, 2].abs() < 0.999  # not a cap
        # radial direction at each corner; the cone's apex takes its face's centre direction
        xy = torch.where(tri[..., :2].norm(dim=-1, keepdim=True) > 1e-6, tri[..., :2],
                         tri[..., :2].mean(dim=1, keepdim=True).expand(-1, 3, -1))
        radial = xy / torch.tensor([a * a, b * b])
        radial = radial / radial.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rise = (a / spec.size[2]) if spec.name == "cone" else 0.0  # the cone's normal tilts up
        smooth = torch.cat([radial, torch.full_like(radial[..., :1], rise)], dim=-1)
        out = torch.where(side[:, None, None], smooth, out)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def welded_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3, 3) normal at each face corner as a mesh tool computes vertex normals for smooth
    shading when every edge is soft (Blender's "shade smooth" without sharp edges, trimesh's or
    Open3D's vertex normals): the normals of all faces meeting at a point, weighted by the
    face's angle there, averaged over every vertex at that point (welded). A cube's corners and
    edges, a cylinder's rims and a cone's apex and base rim then shade rounded."""
    tri = verts[faces]  # (F, 3, 3)
    flat = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    flat = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    e1, e2 = tri.roll(-1, dims=1) - tri, tri.roll(1, dims=1) - tri  # the two edges from each corner
    cos = (e1 * e2).sum(-1) / (e1.norm(dim=-1) * e2.norm(dim=-1)).clamp_min(1e-12)
    angle = torch.acos(cos.clamp(-1.0, 1.0))  # (F, 3)
    point = torch.unique(torch.round(verts * 1e5).to(torch.int64), dim=0, return_inverse=True)[1]  # (V,)
    total = torch.zeros(int(point.max()) + 1, 3).index_add_(
        0, point[faces].reshape(-1), (angle[..., None] * flat[:, None, :]).reshape(-1, 3))
    out = total[point[faces]]
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class MeshLibrary:
    """All shapes of a world, padded to common sizes.

    verts: (S, V, 3) float32, object frame, metres; rows past ``num_verts[s]`` are zeros.
    faces: (S, F, 3) int64 indices into the shape's own V rows; rows past ``num_faces[s]`` are
        the degenerate face (0, 0, 0).
    num_verts, num_faces: (S,) int64, the real counts.
    normals: (S, F, 3, 3) float32, smooth-shading normal at each face corner (``corner_normals``);
        zeros on padding faces.
    apex: (S, F, 3) bool, the corners at a cone's apex (where per-vertex normals averaged over
        the faces around it point straight up: ``Look.apex_up``).
    welded: (S, F, 3, 3) float32, every edge soft (``welded_normals``: ``Look.welded``).
    footprint_radius: (S,) float32, radius of the smallest origin-centred disc that covers the
        shape's footprint on the table (for any yaw): the prior keeps these discs apart.
    """

    verts: torch.Tensor
    faces: torch.Tensor
    num_verts: torch.Tensor
    num_faces: torch.Tensor
    footprint_radius: torch.Tensor
    normals: torch.Tensor
    apex: torch.Tensor
    welded: torch.Tensor


@lru_cache(maxsize=16)
def mesh_library(world: World, detail: int = 1) -> MeshLibrary:
    """Build (once per world and detail level) the padded meshes of all its shapes."""
    meshes = [primitive(s, detail) for s in world.shapes]
    v_max = max(v.shape[0] for v, _ in meshes)
    f_max = max(f.shape[0] for _, f in meshes)
    verts = torch.zeros(len(meshes), v_max, 3)
    faces = torch.zeros(len(meshes), f_max, 3, dtype=torch.int64)
    normals = torch.zeros(len(meshes), f_max, 3, 3)
    apex = torch.zeros(len(meshes), f_max, 3, dtype=torch.bool)
    welded = torch.zeros(len(meshes), f_max, 3, 3)
    for s, (v, f) in enumerate(meshes):
        verts[s, : v.shape[0]] = v
        faces[s, : f.shape[0]] = f
        normals[s, : f.shape[0]] = corner_normals(world.shapes[s], v, f)
        welded[s, : f.shape[0]] = welded_normals(v, f)
        if world.shapes[s].name == "cone":  # the one vertex on the axis above the base
            tri = v[f]
            apex[s, : f.shape[0]] = (tri[..., :2].norm(dim=-1) < 1e-6) & (tri[..., 2] > tri[..., 2].amin() + 1e-6)
    return MeshLibrary(
        verts=verts,
        faces=faces,
        num_verts=torch.tensor([v.shape[0] for v, _ in meshes]),
        num_faces=torch.tensor([f.shape[0] for _, f in meshes]),
        footprint_radius=torch.stack([v[:, :2].norm(dim=-1).max() for v, _ in meshes]),
        normals=normals,
        apex=apex,
        welded=welded,
    )
