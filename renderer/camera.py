"""The fixed camera: PyTorch3D cameras for rasterising, and projection for everyone else.

Pixel coordinates: ``u`` grows to the right (columns), ``v`` grows downward (rows), the image's
top-left corner is (0, 0) and the centre of pixel (row i, column j) is (j + 0.5, i + 0.5).
The fov spans the image's shorter side, as PyTorch3D's NDC convention does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from pytorch3d.renderer import FoVPerspectiveCameras, look_at_view_transform

from renderer.world import World


@lru_cache(maxsize=16)
def _view_transform(world: World) -> tuple[torch.Tensor, torch.Tensor]:
    cam = world.camera
    r, t = look_at_view_transform(
        eye=(cam.position,), at=(cam.look_at,), up=((0.0, 0.0, 1.0),)
    )
    return r[0], t[0]


def view_transform(world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch3D world -> view transform, row-vector form: ``x_view = x_world @ R + T``.

    R: (3, 3), T: (3,). View frame: +x left, +y up, +z along the line of sight.
    """
    r, t = _view_transform(world)
    return r.clone(), t.clone()


def p3d_cameras(world: World, batch: int, device: torch.device | str = "cpu") -> FoVPerspectiveCameras:
    """B copies of the world's camera as PyTorch3D cameras."""
    r, t = _view_transform(world)
    cam = world.camera
    return FoVPerspectiveCameras(
        R=r.expand(batch, 3, 3).to(device), T=t.expand(batch, 3).to(device),
        fov=cam.fov_deg, znear=cam.znear, zfar=cam.zfar, device=device,
    )


def focal_px(world: World, height: int, width: int) -> float:
    """Focal length in pixels (same on both axes)."""
    return min(height, width) / 2 / math.tan(math.radians(world.camera.fov_deg) / 2)


def project(points: torch.Tensor, world: World, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World points (..., 3) metres -> pixels (..., 2) as (u, v) and depth (...,) in metres."""
    r, t = _view_transform(world)
    view = points @ r.to(points) + t.to(points)
    depth = view[..., 2]
    f = focal_px(world, height, width)
    z = depth.clamp_min(1e-6)
    u = width / 2 - f * view[..., 0] / z  # view +x points left
    v = height / 2 - f * view[..., 1] / z  # view +y points up
    return torch.stack([u, v], dim=-1), depth


def camera_info(world: World, height: int, width: int) -> dict:
    """What a client needs to use the camera in its own frames.

    Returns position (world, metres), orientation as the (x, y, z, w) quaternion of the
    optical frame (x right, y down, z forward: the ROS camera optical convention) in the
    world frame, and pinhole intrinsics fx, fy, cx, cy in pixels for ``height x width``.
    """
    r, _ = _view_transform(world)
    # Columns of R are the view axes in world coordinates; optical = (-x_view, -y_view, z_view).
    rot = torch.stack([-r[:, 0], -r[:, 1], r[:, 2]], dim=1).double()
    f = focal_px(world, height, width)
    cam = world.camera
    return {
        "position": dict(zip("xyz", cam.position)),
        "orientation": dict(zip("xyzw", matrix_to_quat(rot))),
        "fov_deg": cam.fov_deg,
        "width": width,
        "height": height,
        "fx": f, "fy": f, "cx": width / 2, "cy": height / 2,
        "look_at": dict(zip("xyz", cam.look_at)),
        "distance_m": cam.distance,
        "elevation_deg": cam.elevation_deg,
        "optical_frame": "x right, y down, z forward",
    }


def matrix_to_quat(m: torch.Tensor) -> list[float]:
    """(3, 3) rotation -> [x, y, z, w] with w >= 0."""
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(float(tr) + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(torch.argmax(torch.diagonal(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(float(1.0 + m[i, i] - m[j, j] - m[k, k])) * 2
        q = [0.0] * 4
        q[i] = 0.25 * s
        q[j] = float(m[j, i] + m[i, j]) / s
        q[k] = float(m[k, i] + m[i, k]) / s
        q[3] = float(m[k, j] - m[j, k]) / s
    q = [float(v) for v in q]
    if q[3] < 0:
        q = [-v for v in q]
    return q


def object_bboxes(scene, world: World, height: int, width: int) -> torch.Tensor:
    """``camera_bboxes`` for the world's fixed camera and ``height x width`` images."""
    from renderer.pinhole import spec_cameras  # local: pinhole imports this module's neighbours

    return camera_bboxes(scene, world, spec_cameras(world.camera, scene.batch_size, height, width).to(scene.position.device))


def camera_bboxes(scene, world: World, cameras) -> torch.Tensor:
    """Image-space bounding boxes of each slot's whole mesh (occluded parts included), in the
    images of ``cameras`` (``renderer.pinhole.Cameras``, one per scene).

    scene: SceneBatch. Returns (B, N, 4) float [u0, v0, u1, v1] in pixels, clipped to the image;
    absent slots are all zeros.
    """
    from renderer.meshes import mesh_library  # local: keep camera.py importable on its own

    scene.validate(world)
    lib = mesh_library(world)
    scene = scene.blank_absent()  # absent slots may hold out-of-range indices or NaNs
    device = scene.position.device
    template = lib.verts.to(device)[scene.shape]  # (B, N, V, 3)
    real = torch.arange(template.shape[2], device=device) < lib.num_verts.to(device)[scene.shape][..., None]
    verts = torch.einsum("bnij,bnvj->bnvi", scene.rotation(), template) + scene.position[:, :, None, :]
    uv, _ = cameras.project(verts)  # (B, N, V, 2)
    big = torch.finfo(uv.dtype).max
    lo = torch.where(real[..., None], uv, torch.full_like(uv, big)).amin(dim=2)
    hi = torch.where(real[..., None], uv, torch.full_like(uv, -big)).amax(dim=2)
    box = torch.cat([lo, hi], dim=-1)
    box[..., 0::2] = box[..., 0::2].clamp(0, cameras.width)
    box[..., 1::2] = box[..., 1::2].clamp(0, cameras.height)
    return box * scene.present[..., None]


def camera_dict(cameras) -> dict:
    """The first camera of a ``renderer.pinhole.Cameras`` batch as ``camera_info`` states the
    world's: position, orientation (quaternion x, y, z, w of the optical frame: x right, y down,
    z forward), intrinsics fx, fy, cx, cy for width x height, the vertical fov, and where the
    optical axis meets the table (look_at), how far (distance_m) and how steeply (elevation_deg)."""
    d = {k: float(v[0]) for k, v in cameras.describe().items()}
    axis = cameras.rotation[0, :, 2].double()
    position = cameras.position[0].double()
    look_at = position + d["distance"] * axis
    r6 = lambda v: round(float(v), 6) + 0.0  # noqa: E731  (float32 cameras: more digits are noise; no -0.0)
    fx, fy = (r6(v) for v in cameras.focal[0])
    cx, cy = (r6(v) for v in cameras.principal[0])
    return {
        "position": {k: r6(v) for k, v in zip("xyz", position.tolist())},
        "orientation": {k: r6(v) for k, v in zip("xyzw", matrix_to_quat(cameras.rotation[0].double()))},
        "fov_deg": round(d["fov_deg"], 4), "width": cameras.width, "height": cameras.height,
        "fx": fx, "fy": fy, "cx": cx, "cy": cy,
        "look_at": {k: r6(v) for k, v in zip("xyz", look_at.tolist())}, "distance_m": r6(d["distance"]),
        "elevation_deg": round(d["elevation_deg"], 4), "optical_frame": "x right, y down, z forward",
        **({} if cameras.distortion is None else lens_dict(cameras.distortion[0])),
    }


def lens_dict(d: torch.Tensor) -> dict:
    """One camera's distortion coefficients (8,) as ``camera_info`` states them: the model (8
    terms where k4-k6 are used, else plumb_bob's 5) and D."""
    rational = bool(d[5:].any())
    return {"distortion_model": "rational_polynomial" if rational else "plumb_bob",
            "D": [round(float(v), 6) + 0.0 for v in d[: 8 if rational else 5]]}


def cameras_from_dict(d: dict):
    """The inverse of ``camera_dict``: a dict with ``position`` {x, y, z}, ``orientation``
    {x, y, z, w} (the optical frame in the table frame), ``fx``, ``fy``, ``cx``, ``cy``,
    ``width``, ``height``, and optionally ``D`` (lens distortion) -> a ``renderer.pinhole.Cameras``
    batch of one (other keys ignored)."""
    from renderer.pinhole import Cameras, lens_coefficients  # local: pinhole imports this module's neighbours
    from renderer.scene import quat_to_matrix

    q, p = d["orientation"], d["position"]
    rot = quat_to_matrix(torch.tensor([q["x"], q["y"], q["z"], q["w"]], dtype=torch.float64)).float()
    return Cameras(torch.tensor([[p["x"], p["y"], p["z"]]], dtype=torch.float32), rot[None],
                   torch.tensor([[d["fx"], d["fy"]]], dtype=torch.float32),
                   torch.tensor([[d["cx"], d["cy"]]], dtype=torch.float32), int(d["height"]), int(d["width"]),
                   lens_coefficients(d.get("D")))
