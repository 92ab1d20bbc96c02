"""Batched pinhole cameras: projection, rays, lifting to the table, the envelope, warps.

Frames: the world (table) frame of REP-103 (metres, z up). A camera's optical frame is the
ROS one: x right, y down, z forward. Pixel coordinates: ``u`` to the right, ``v`` down, the
image's top-left corner at (0, 0), pixel (row i, column j) centred at (j + 0.5, i + 0.5), so a
camera_info ``K`` applies as given: ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.

PyTorch3D's conventions (view +x left, +y up, row-vector transforms) stay inside ``p3d()``.

Lens distortion, where a camera states it (``Cameras.distortion``), is the model of ROS
``camera_info`` and OpenCV (``plumb_bob`` with 5 terms, ``rational_polynomial`` with 8, in the
order k1, k2, p1, p2, k3, k4, k5, k6): a point at ideal normalised image coordinates (x, y)
appears at ``distort(x, y)``. Projection and the warp to the view apply it; rays invert it.

The network reads every image through a *canonical view* (``canonical_cameras``): a virtual
camera at the same centre that looks at the table centre, level (no roll), with a focal length
that makes the table span the same part of the image at any distance. A turn of a camera about
its own centre changes the image by a homography, exactly, whatever the scene's depth
(``homography``, ``warp_images``): so any supported camera's image becomes the canonical view
without approximation; only the camera's elevation and distance remain for the network to know.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from pytorch3d.renderer import PerspectiveCameras
from torch.nn import functional as F

from renderer.world import CameraEnvelope, CameraSpec

T = TypeVar("T")

UP = (0.0, 0.0, 1.0)
DISTORTION_TERMS = 8  # k1, k2, p1, p2, k3, k4, k5, k6


def distort(xy: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Ideal normalised image points (B, P, 2) -> where the lens shows them, for coefficients
    ``d`` (B, 8): radial (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6) and
    tangential p1, p2 (OpenCV's and ROS's model)."""
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3, k4, k5, k6 = (d[:, i, None].to(xy) for i in range(DISTORTION_TERMS))
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    return torch.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                        y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], dim=-1)


def undistort(xy: torch.Tensor, d: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """The inverse of ``distort`` (B, P, 2), by fixed-point iteration as OpenCV's
    ``undistortPoints``; exact to well under a thousandth of a pixel for moderate distortion,
    e.g. k1 = -0.25; where convergence matters, check the round trip, as ``source_pixels`` does)."""
    guess = xy
    for _ in range(iterations):
        guess = guess + (xy - distort(guess, d))
    return guess


def lens_coefficients(d: Sequence[float] | None) -> torch.Tensor | None:
    """``camera_info``'s D (4, 5 or 8 terms) -> (1, 8) coefficients in ``distort``'s order, zeros
    after the terms given; None where D is absent or all zeros (an ideal pinhole)."""
    d = list(d or [])
    if not any(d):
        return None
    return torch.tensor([d + [0.0] * (DISTORTION_TERMS - len(d))], dtype=torch.float32)


def lens_stretch(d: torch.Tensor, corner_radius: torch.Tensor) -> torch.Tensor:
    """(B,) float64: how far the radial distortion ``d`` (B, 8) moves the image's corners, as
    the ratio of their ideal radius to the radius the lens shows them at (``corner_radius`` (B,),
    normalised): above 1 for barrel distortion, below for pincushion. NaN where the distortion
    is not one-to-one out to the corners (the image would show some directions twice, and no
    warp undoes that)."""
    r = torch.linspace(0, 1, 1025, dtype=torch.float64)[None, :] * (3 * corner_radius.double()[:, None])
    radial = d.double().clone().index_fill_(1, torch.tensor([2, 3], device=d.device), 0.0)  # tangential aside
    shown = distort(torch.stack([r, torch.zeros_like(r)], -1), radial)[..., 0]
    reached = torch.cummax((shown >= corner_radius.double()[:, None]).int(), 1).values.bool()
    first = reached.int().argmax(1)  # the first sample at or past the corners
    rising = (shown[:, 1:] - shown[:, :-1]) > 0
    before = torch.arange(r.shape[1] - 1)[None, :] < first[:, None]
    one_to_one = reached.any(1) & ~(before & ~rising).any(1)
    ideal = r.gather(1, first[:, None])[:, 0]
    return torch.where(one_to_one, ideal / corner_radius.double().clamp_min(1e-12), torch.full_like(ideal, math.nan))


@dataclass(frozen=True)
class Cameras:
    """B pinhole cameras that share one image size.

    position: (B, 3) float32, centre of projection, world frame, metres.
    rotation: (B, 3, 3) float32, world_from_optical: column k is optical axis k (x right,
        y down, z forward) in world coordinates.
    focal: (B, 2) float32, (fx, fy) in pixels.
    principal: (B, 2) float32, (cx, cy) in pixels.
    height, width: image size in pixels.
    distortion: (B, 8) lens distortion (``distort``; k1, k2, p1, p2, k3, k4, k5, k6), or None
        for an ideal pinhole (all zeros).
    """

    position: torch.Tensor
    rotation: torch.Tensor
    focal: torch.Tensor
    principal: torch.Tensor
    height: int
    width: int
    distortion: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.position.shape[0]

    def finite(self) -> torch.Tensor:
        """(B,) bool: every number of the camera (pose and intrinsics) is finite in its dtype."""
        parts = (self.position, self.rotation.flatten(1), self.focal, self.principal, self.lens())
        return torch.cat([torch.isfinite(x).reshape(self.batch_size, -1) for x in parts], dim=1).all(1)

    def lens(self) -> torch.Tensor:
        """(B, 8) distortion coefficients, zeros for an ideal pinhole."""
        if self.distortion is not None:
            return self.distortion
        return torch.zeros(self.batch_size, DISTORTION_TERMS, device=self.focal.device)

    def key(self) -> tuple:
        """The cameras' numbers (as stored, on any device), image size and device as a hashable
        key: equal for cameras that project alike, for keeping what is computed from them."""
        parts = (self.position, self.rotation, self.focal, self.principal, self.distortion)
        return (self.height, self.width, self.position.device.type,
                *(None if t is None else t.numpy(force=True).tobytes() for t in parts))

    def select(self, index: torch.Tensor | slice) -> Cameras:
        return Cameras(self.position[index], self.rotation[index], self.focal[index], self.principal[index],
                       self.height, self.width, None if self.distortion is None else self.distortion[index])

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.position.to(device), self.rotation.to(device), self.focal.to(device),
                       self.principal.to(device), self.height, self.width,
                       None if self.distortion is None else self.distortion.to(device))

    def resized(self, height: int, width: int) -> Cameras:
        """The same cameras for the image scaled to ``height x width`` (intrinsics scale; the
        distortion, in normalised coordinates, stays)."""
        scale = torch.tensor([width / self.width, height / self.height], device=self.focal.device)
        return Cameras(self.position, self.rotation, self.focal * scale, self.principal * scale, height, width,
                       self.distortion)

    def ideal(self) -> Cameras:
        """The same cameras without their lens distortion."""
        return Cameras(self.position, self.rotation, self.focal, self.principal, self.height, self.width)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (B, ..., 3) -> pixels (B, ..., 2) as (u, v), and depth (B, ..., ) metres
        along the optical axis (negative behind the camera)."""
        b = points.shape[0]
        flat = points.reshape(b, -1, 3) - self.position[:, None, :]
        cam = flat @ self.rotation.to(points)  # (B, P, 3) optical coordinates
        depth = cam[..., 2]
        z = torch.where(depth.abs() < 1e-9, torch.full_like(depth, 1e-9), depth)
        xy = cam[..., :2] / z[..., None]
        if self.distortion is not None:
            xy = distort(xy, self.distortion)
        uv = xy * self.focal[:, None, :].to(points) + self.principal[:, None, :].to(points)
        return uv.reshape(*points.shape[:-1], 2), depth.reshape(points.shape[:-1])

    def rays(self, uv: torch.Tensor) -> torch.Tensor:
        """Pixels (B, ..., 2) -> ray directions (B, ..., 3) in the world frame, scaled so that
        their optical z is 1 (not unit length)."""
        b = uv.shape[0]
        flat = uv.reshape(b, -1, 2)
        xy = (flat - self.principal[:, None, :].to(uv)) / self.focal[:, None, :].to(uv)
        if self.distortion is not None:
            xy = undistort(xy, self.distortion)
        opt = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)  # (B, P, 3)
        return (opt @ self.rotation.to(uv).transpose(1, 2)).reshape(*uv.shape[:-1], 3)

    def lift(self, uv: torch.Tensor, z: torch.Tensor | float) -> torch.Tensor:
        """Pixels (B, ..., 2) -> the world points (B, ..., 3) where their rays meet the plane at
        height ``z`` (a float, or (B, ...) per pixel). A ray that runs level or upward is
        clamped to meet the plane 20 m away rather than behind the camera."""
        d = self.rays(uv)
        c = self.position.to(uv).reshape(uv.shape[0], *([1] * (uv.dim() - 2)), 3)
        z = torch.as_tensor(z, dtype=uv.dtype, device=uv.device)
        dz = d[..., 2]
        drop = c[..., 2] - z  # height of the camera above the plane
        t = drop / (-dz).clamp_min(drop.abs().clamp_min(1e-6) / 20.0)
        return c + t[..., None] * d

    def p3d(self) -> PerspectiveCameras:
        """The same cameras as PyTorch3D's screen-space ``PerspectiveCameras``."""
        flip = torch.tensor([-1.0, -1.0, 1.0], device=self.rotation.device)
        r = self.rotation * flip  # columns: view axes (x left, y up, z forward) in world coordinates
        t = -(self.position[:, None, :] @ r)[:, 0]
        size = torch.tensor([[self.height, self.width]], device=r.device).expand(self.batch_size, 2)
        return PerspectiveCameras(focal_length=self.focal, principal_point=self.principal, R=r, T=t,
                                  in_ndc=False, image_size=size, device=r.device)

    def describe(self) -> dict[str, torch.Tensor]:
        """Envelope quantities, each (B,): elevation_deg, distance (to the look-at point),
        look_at_radius, fov_deg (vertical), roll_deg, skew (|fx / fy - 1|)."""
        axis = self.rotation[:, :, 2]
        elevation = torch.rad2deg(torch.asin((-axis[:, 2]).clamp(-1, 1)))
        down = (-axis[:, 2]).clamp_min(1e-6)
        distance = self.position[:, 2] / down
        look_at = self.position + distance[:, None] * axis
        # roll: the optical x axis against the level direction perpendicular to the axis
        level = torch.cross(axis, torch.tensor(UP, device=axis.device).expand_as(axis), dim=-1)
        level = level / level.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        x = self.rotation[:, :, 0]
        roll = torch.atan2((torch.cross(level, x, dim=-1) * axis).sum(-1), (level * x).sum(-1))
        fov = torch.rad2deg(2 * torch.atan(self.height / 2 / self.focal[:, 1]))
        return {"elevation_deg": elevation, "distance": distance,
                "look_at_radius": look_at[:, :2].norm(dim=-1), "fov_deg": fov,
                "roll_deg": torch.rad2deg(roll), "skew": (self.focal[:, 0] / self.focal[:, 1] - 1).abs()}


class PerCamera(Generic[T]):
    """What is computed from cameras alone (a warp plan, a table cast), kept for the last
    ``size`` cameras by their numbers (``Cameras.key``) and whatever else it depends on:
    most requests come from a handful of cameras. Thread-safe; the least recently used is
    dropped; the values handed out are shared, read only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cameras: Cameras, depends_on: tuple, make: Callable[[], T]) -> T:
        """The value kept for ``cameras`` and ``depends_on``, else ``make()``, kept."""
        key = (cameras.key(), *depends_on)
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def lens_canvas(cameras: Cameras, margin: int = 2, most: float = 4.0) -> tuple[Cameras, torch.Tensor]:
    """How to draw the images of cameras with lens distortion: an ideal pinhole camera for each
    (the same pose and focal length, its image widened to take in every direction the lens
    shows), and the (B, H, W, 2) ``grid_sample`` grid into those images that gives each
    camera's own, distorted, image. ValueError where the widened image would be more than
    ``most`` times the size on a side."""
    h, w = cameras.height, cameras.width
    dev = cameras.focal.device
    v, u = torch.meshgrid(torch.arange(h, device=dev) + 0.5, torch.arange(w, device=dev) + 0.5, indexing="ij")
    uv = torch.stack([u, v], dim=-1).reshape(1, -1, 2)
    f, c = cameras.focal[:, None, :], cameras.principal[:, None, :]
    ideal_uv = undistort((uv - c) / f, cameras.lens()) * f + c  # (B, H*W, 2)
    lo = ideal_uv.amin(1).floor() - margin
    size = (ideal_uv.amax(1).ceil() + margin - lo).amax(0)  # one canvas size (width, height) for all
    if not bool(torch.isfinite(size).all()) or size[0] > most * w or size[1] > most * h:
        raise ValueError(f"the lens distortion spreads a {w}x{h} image over more than {most:g} times its size")
    ideal = Cameras(cameras.position, cameras.rotation, cameras.focal, cameras.principal - lo,
                    int(size[1]), int(size[0]))
    grid = (ideal_uv - lo[:, None, :]) / size * 2 - 1
    return ideal, grid.reshape(-1, h, w, 2)


def join_cameras(cameras: list[Cameras]) -> Cameras:
    """Batches of cameras for images of one size, joined into one batch."""
    sizes = {(c.height, c.width) for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"cameras for images of one size only, got {sorted(sizes)}")
    if len(cameras) == 1:  # nothing to join (the cameras are frozen: sharing them is safe)
        return cameras[0]
    lens = None if all(c.distortion is None for c in cameras) else torch.cat([c.lens() for c in cameras])
    return Cameras(torch.cat([c.position for c in cameras]), torch.cat([c.rotation for c in cameras]),
                   torch.cat([c.focal for c in cameras]), torch.cat([c.principal for c in cameras]),
                   cameras[0].height, cameras[0].width, lens)


def look_at_cameras(eye: torch.Tensor, target: torch.Tensor, fov_deg: torch.Tensor, height: int, width: int,
                    roll_deg: torch.Tensor | None = None) -> Cameras:
    """Cameras at ``eye`` (B, 3) looking at ``target`` (B, 3), level but for ``roll_deg`` (B,)
    (a turn of the image about the optical axis, counter-clockwise as seen in the image),
    with vertical field of view ``fov_deg`` (B,), square pixels, centred principal point."""
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True)
    up = torch.tensor(UP, dtype=eye.dtype, device=eye.device).expand_as(z)
    x = torch.cross(z, up, dim=-1)  # right: level, perpendicular to the line of sight
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    y = torch.cross(z, x, dim=-1)  # down in the image
    if roll_deg is not None:
        a = torch.deg2rad(roll_deg)[:, None]
        x, y = x * torch.cos(a) + y * torch.sin(a), -x * torch.sin(a) + y * torch.cos(a)
    rotation = torch.stack([x, y, z], dim=-1)
    f = height / 2 / torch.tan(torch.deg2rad(fov_deg) / 2)
    focal = torch.stack([f, f], dim=-1)
    principal = torch.tensor([width / 2, height / 2], dtype=eye.dtype, device=eye.device).expand(len(eye), 2)
    return Cameras(eye, rotation, focal, principal.clone(), height, width)


def spec_cameras(spec: CameraSpec, batch: int, height: int, width: int) -> Cameras:
    """B copies of a world's fixed camera (its fov spans the image's shorter side)."""
    eye = torch.tensor([spec.position], dtype=torch.float32).expand(batch, 3)
    target = torch.tensor([spec.look_at], dtype=torch.float32).expand(batch, 3)
    short = min(height, width)
    fov = 2 * math.degrees(math.atan(height / short * math.tan(math.radians(spec.fov_deg) / 2)))
    return look_at_cameras(eye.clone(), target.clone(), torch.full((batch,), fov), height, width)


def sample_cameras(envelope: CameraEnvelope, batch: int, generator: torch.Generator, height: int, width: int,
                   margin: bool = True) -> Cameras:
    """Draw ``batch`` cameras for ``height x width`` images from the envelope: azimuth uniform
    all around the table; elevation, distance, vertical fov and roll uniform in their ranges
    (each widened by ``train_margin`` of its width on both sides when ``margin``); the look-at
    point uniform in the disc of ``look_at_radius`` around the table centre."""
    def uniform(lo_hi: tuple[float, float]) -> torch.Tensor:
        lo, hi = lo_hi
        pad = (hi - lo) * envelope.train_margin if margin else 0.0
        return lo - pad + (hi - lo + 2 * pad) * torch.rand(batch, generator=generator)

    azimuth = torch.rand(batch, generator=generator) * 2 * math.pi
    elevation = torch.deg2rad(uniform(envelope.elevation_deg).clamp(5.0, 89.0))
    distance = uniform(envelope.distance)
    fov = uniform(envelope.fov_deg)
    roll = uniform(envelope.roll_deg)
    r = envelope.look_at_radius * torch.rand(batch, generator=generator).sqrt()
    phi = torch.rand(batch, generator=generator) * 2 * math.pi
    target = torch.stack([r * torch.cos(phi), r * torch.sin(phi), torch.zeros(batch)], dim=-1)
    eye = target + distance[:, None] * torch.stack([
        torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation)], -1)
    return look_at_cameras(eye, target, fov, height, width, roll)


def envelope_violations(cameras: Cameras, envelope: CameraEnvelope) -> list[str]:
    """Per camera, '' when it lies in the envelope, else a message naming the first field out
    of range and the range (for a 422)."""
    d = cameras.describe()
    out = []
    aspect = cameras.width / cameras.height
    finite = cameras.finite()
    for i in range(cameras.batch_size):
        msg = ""
        if not finite[i]:
            out.append("camera numbers too large to compute with (not finite as 32-bit floats)")
            continue
        checks = [("elevation_deg", envelope.elevation_deg), ("distance", envelope.distance),
                  ("fov_deg", envelope.fov_deg), ("roll_deg", envelope.roll_deg)]
        for name, (lo, hi) in checks:
            v = float(d[name][i])
            if not math.isfinite(v) or not lo - 1e-6 <= v <= hi + 1e-6:
                msg = f"camera {name} {v:.3g} is outside the supported range {lo:g}..{hi:g}"
                break
        if not msg and float(d["look_at_radius"][i]) > envelope.look_at_radius + 1e-6:
            msg = (f"camera look_at point (where the optical axis meets the table) is "
                   f"{float(d['look_at_radius'][i]):.3f} m from the table centre; at most "
                   f"{envelope.look_at_radius:g} m is supported")
        if not msg and float(d["skew"][i]) > envelope.max_skew:
            msg = f"camera fx/fy differs from 1 by {float(d['skew'][i]):.3f}; at most {envelope.max_skew:g} is supported"
        cx, cy = (float(v) for v in cameras.principal[i])
        if not msg and not (0 <= cx <= cameras.width and 0 <= cy <= cameras.height):
            msg = (f"camera principal point (cx, cy) = ({cx:.4g}, {cy:.4g}) lies outside the {cameras.width}x"
                   f"{cameras.height} image; a camera's optical axis passes through its image")
        if not msg and not envelope.aspect[0] <= aspect <= envelope.aspect[1]:
            msg = f"image aspect (width/height) {aspect:.3g} is outside {envelope.aspect[0]:g}..{envelope.aspect[1]:g}"
        out.append(msg)
    return out


def canonical_cameras(position: torch.Tensor, size: int, half_width: float) -> Cameras:
    """The network's view from camera centres ``position`` (B, 3): looking at the table centre,
    level, square ``size`` x ``size``, with the focal length that maps ``half_width`` metres
    across the line of sight at the table centre to half the image."""
    b = position.shape[0]
    target = torch.zeros(b, 3, dtype=position.dtype, device=position.device)
    distance = position.norm(dim=-1)
    fov = torch.rad2deg(2 * torch.atan(half_width / distance))
    return look_at_cameras(position, target, fov, size, size)


def homography(src: Cameras, dst: Cameras) -> torch.Tensor:
    """(B, 3, 3) maps homogeneous pixels of ``dst`` to pixels of ``src``, for cameras with the
    same centre (a pure turn, exact at every depth): ``x_src ~ K_src R_src^T R_dst K_dst^-1 x_dst``."""
    def k(c: Cameras) -> torch.Tensor:
        m = torch.zeros(c.batch_size, 3, 3, dtype=c.focal.dtype, device=c.focal.device)
        m[:, 0, 0], m[:, 1, 1] = c.focal[:, 0], c.focal[:, 1]
        m[:, 0, 2], m[:, 1, 2], m[:, 2, 2] = c.principal[:, 0], c.principal[:, 1], 1.0
        return m

    return k(src) @ src.rotation.transpose(1, 2) @ dst.rotation @ torch.linalg.inv(k(dst))


def source_pixels(src: Cameras, dst: Cameras) -> torch.Tensor:
    """(B, H_dst, W_dst, 2): where each pixel centre of ``dst`` (an ideal pinhole) falls in the
    ``src`` image, through ``src``'s lens where it has one, as (u, v) pixels (NaN-free; points
    behind ``src`` are sent far outside the image)."""
    h, w = dst.height, dst.width
    dev = dst.focal.device
    v, u = torch.meshgrid(torch.arange(h, device=dev) + 0.5, torch.arange(w, device=dev) + 0.5, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(1, -1, 3).to(dst.focal.dtype)
    m = homography(src, dst)
    q = pix @ m.transpose(1, 2)  # (B, H*W, 3)
    ahead = q[..., 2] > 1e-6
    uv = q[..., :2] / torch.where(ahead, q[..., 2], torch.ones_like(q[..., 2]))[..., None]
    if src.distortion is not None:  # a lens shows some far-off directions back inside: not those
        f, c = src.focal[:, None, :].to(uv), src.principal[:, None, :].to(uv)
        xy = ((uv - c) / f).clamp(-10, 10)
        shown = distort(xy, src.distortion)
        ahead = ahead & ((undistort(shown, src.distortion) - xy).norm(dim=-1) < 1e-3)
        uv = shown * f + c
    uv = torch.where(ahead[..., None], uv, torch.full_like(uv, -1e6))
    return uv.reshape(-1, h, w, 2)


def coverage(src: Cameras, dst: Cameras) -> torch.Tensor:
    """(B, H_dst, W_dst) bool: the pixels of ``dst`` that the ``src`` image shows."""
    uv = source_pixels(src, dst)
    return (uv[..., 0] >= 0) & (uv[..., 0] <= src.width) & (uv[..., 1] >= 0) & (uv[..., 1] <= src.height)


def warp_images(images: torch.Tensor, src: Cameras, dst: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``images`` (B, C, H_src, W_src) taken by ``src`` into the view of ``dst`` (same
    centres). Returns (B, C, H_dst, W_dst) bilinear samples, zero outside the source image, and
    the (B, H_dst, W_dst) bool coverage. Downscale the source first where it is much finer than
    the destination (bilinear sampling does not filter)."""
    if images.shape[-2:] != (src.height, src.width):
        raise ValueError(f"images are {tuple(images.shape[-2:])} but the cameras are {(src.height, src.width)}")
    grid, inside = sampling_grid(src, dst)
    return sample_grid(images, grid, inside[:, None]), inside


def sampling_grid(src: Cameras, dst: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """``warp_images``' geometry alone: the (B, H_dst, W_dst, 2) ``grid_sample`` grid into the
    ``src`` images and the (B, H_dst, W_dst) bool coverage."""
    uv = source_pixels(src, dst)
    grid = torch.stack([uv[..., 0] / src.width * 2 - 1, uv[..., 1] / src.height * 2 - 1], dim=-1)
    return grid, (grid.abs() <= 1).all(dim=-1)


def sample_grid(images: torch.Tensor, grid: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``images`` (B, C, H, W) at ``grid`` (``sampling_grid``), times the
    coverage ``cover`` (B, 1, H_dst, W_dst): zero where the source image shows nothing."""
    out = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out * cover.to(out.dtype)
