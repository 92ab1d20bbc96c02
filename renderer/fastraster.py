"""A vectorised backward pass for PyTorch3D's mesh rasteriser on the CPU.

PyTorch3D's CPU backward (``_C.rasterize_meshes_backward``) walks every pixel and face slot
with one small tensor operation per term: about 235 000 of them for 16 images of 32x32 with 10
faces per pixel, about a second, which made it nine tenths of an ELBO or adaptation step here
(``bench/raster_backward.py``). The rasteriser's outputs for the faces it picked are closed-form
functions of those faces' vertices, so the backward pass here recomputes them with batched torch
operations from the saved ``pix_to_face`` and lets autograd differentiate them:

- the pixel centre in NDC (PyTorch3D's convention: +x left, +y up, the shorter image side
  spanning [-1, 1]);
- barycentric coordinates from the 2D edge functions, perspective-corrected by the vertices'
  depths when asked, clipped to the triangle and renormalised when asked (the rasteriser's
  default with a blur radius);
- the depth, interpolated with the (clipped) barycentric coordinates;
- the squared distance from the pixel centre to the nearest edge, negative inside the face.

These are the definitions of PyTorch3D's own reference implementation
(``rasterize_meshes_python``), so the gradients are those of the same functions; the forward pass
is PyTorch3D's own C++ call, unchanged (renders are bit for bit the same). ``install()`` puts the
class in place of PyTorch3D's autograd function for CPU tensors; CUDA tensors keep PyTorch3D's
own (its CUDA backward is fast). ``tests/test_fastraster.py`` checks the gradients against
PyTorch3D's on the project's scenes.
"""

from __future__ import annotations

import importlib

import torch
from pytorch3d import _C

# the module, not the function of the same name that pytorch3d.renderer.mesh exports
_pytorch3d_raster = importlib.import_module("pytorch3d.renderer.mesh.rasterize_meshes")

EPS = 1e-8  # PyTorch3D's kEpsilon: added to a face's doubled area, the floor of the perspective divisor
CLIP_SUM_FLOOR = 1e-5  # the floor of the clipped barycentric coordinates' sum


def pixel_ndc(size: int, other: int, device=None) -> torch.Tensor:
    """NDC coordinate of each pixel centre along an image side of ``size`` pixels (``other`` the
    other side), in output order: index 0 is the top row / left column, the largest NDC value."""
    span = 2.0 * (size / other if size > other else 1.0)
    fixed = torch.arange(size - 1, -1, -1, dtype=torch.float32, device=device)
    return -span / 2 + (span * fixed + span / 2) / size


def _edge(px, py, ax, ay, bx, by):
    return (px - ax) * (by - ay) - (py - ay) * (bx - ax)


def _segment_sq_distance(px, py, ax, ay, bx, by):
    """Squared distance from (px, py) to the segment a-b (to b when the segment is a point)."""
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    t = (((px - ax) * dx + (py - ay) * dy) / l2.clamp_min(EPS)).clamp(0.0, 1.0)
    qx, qy = ax + t * dx - px, ay + t * dy - py
    return torch.where(l2 <= EPS, (px - bx) ** 2 + (py - by) ** 2, qx * qx + qy * qy)


def fragment_values(face_verts: torch.Tensor, pix_to_face: torch.Tensor, image_size: tuple[int, int],
                    perspective_correct: bool, clip_barycentric_coords: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rasteriser's (zbuf (M,), bary (M, 3), dists (M,)) at the M filled slots of
    ``pix_to_face`` (N, H, W, K), recomputed from ``face_verts`` (F, 3, 3) by differentiable torch
    operations; and the filled slots' flat indices into (N, H, W, K)."""
    h, w = image_size
    filled = (pix_to_face.reshape(-1) >= 0).nonzero()[:, 0]
    k = pix_to_face.shape[-1]
    row = filled // (w * k) % h
    col = filled // k % w
    px = pixel_ndc(w, h, face_verts.device)[col]
    py = pixel_ndc(h, w, face_verts.device)[row]
    tri = face_verts[pix_to_face.reshape(-1)[filled]]  # (M, 3, 3)
    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = (tri[:, i].unbind(-1) for i in range(3))
    area = _edge(x2, y2, x0, y0, x1, y1) + EPS
    bary = torch.stack([_edge(px, py, x1, y1, x2, y2), _edge(px, py, x2, y2, x0, y0),
                        _edge(px, py, x0, y0, x1, y1)], -1) / area[:, None]
    if perspective_correct:
        top = bary * torch.stack([z1 * z2, z0 * z2, z0 * z1], -1)
        bary = top / top.sum(-1, keepdim=True).clamp_min(EPS)
    inside = (bary > 0).all(-1)
    if clip_barycentric_coords:
        bary = bary.clamp_min(0.0)
        bary = bary / bary.sum(-1, keepdim=True).clamp_min(CLIP_SUM_FLOOR)
    zbuf = (bary * torch.stack([z0, z1, z2], -1)).sum(-1)
    dist = torch.minimum(torch.minimum(_segment_sq_distance(px, py, x0, y0, x1, y1),
                                       _segment_sq_distance(px, py, x0, y0, x2, y2)),
                         _segment_sq_distance(px, py, x1, y1, x2, y2))
    return zbuf, bary, torch.where(inside, -dist, dist), filled


class RasterizeFaceVerts(torch.autograd.Function):
    """PyTorch3D's ``_RasterizeFaceVerts`` with the backward pass of ``fragment_values``."""

    @staticmethod
    def forward(ctx, face_verts, mesh_to_face_first_idx, num_faces_per_mesh, clipped_faces_neighbor_idx,
                image_size=(256, 256), blur_radius=0.01, faces_per_pixel=0, bin_size=0, max_faces_per_bin=0,
                perspective_correct=False, clip_barycentric_coords=False, cull_backfaces=False):
        pix_to_face, zbuf, bary, dists = _C.rasterize_meshes(
            face_verts, mesh_to_face_first_idx, num_faces_per_mesh, clipped_faces_neighbor_idx, image_size,
            blur_radius, faces_per_pixel, bin_size, max_faces_per_bin, perspective_correct,
            clip_barycentric_coords, cull_backfaces)
        ctx.save_for_backward(face_verts, pix_to_face)
        ctx.mark_non_differentiable(pix_to_face)
        ctx.settings = (tuple(image_size), perspective_correct, clip_barycentric_coords)
        return pix_to_face, zbuf, bary, dists

    @staticmethod
    def backward(ctx, grad_pix_to_face, grad_zbuf, grad_bary, grad_dists):
        face_verts, pix_to_face = ctx.saved_tensors
        with torch.enable_grad():
            verts = face_verts.detach().requires_grad_()
            zbuf, bary, dists, filled = fragment_values(verts, pix_to_face, *ctx.settings)
            pairs = [(out, grad.reshape(-1, *out.shape[1:])[filled])
                     for out, grad in ((zbuf, grad_zbuf), (bary, grad_bary), (dists, grad_dists))
                     if grad is not None]
            (grad_verts,) = torch.autograd.grad([p[0] for p in pairs], verts, [p[1] for p in pairs],
                                                allow_unused=True)
        if grad_verts is None:
            grad_verts = torch.zeros_like(face_verts)
        return (grad_verts,) + (None,) * 11


class _Dispatch:
    """Stands in for PyTorch3D's ``_RasterizeFaceVerts``: CPU tensors take ``RasterizeFaceVerts``."""

    original = _pytorch3d_raster._RasterizeFaceVerts

    @classmethod
    def apply(cls, face_verts, *args):
        if face_verts.is_cuda:
            return cls.original.apply(face_verts, *args)
        return RasterizeFaceVerts.apply(face_verts, *args)


def install() -> None:
    """Route PyTorch3D's CPU mesh rasterisation through ``RasterizeFaceVerts`` (idempotent)."""
    _pytorch3d_raster._RasterizeFaceVerts = _Dispatch


def uninstall() -> None:
    """PyTorch3D's own autograd function again (for comparisons)."""
    _pytorch3d_raster._RasterizeFaceVerts = _Dispatch.original
