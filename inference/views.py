"""The network's view of an image, and the way back to the table.

Any supported camera's image is turned into the canonical view (``renderer.pinhole``): a
virtual camera at the same centre, looking at the table centre, level, with the table at a
fixed scale. The turn is exact (a homography), so the network never has to learn a camera's
roll, azimuth, field of view or aspect; it is told the two things that remain, the view's
elevation and distance (``camera_features``), and which pixels the real image covered.

The network answers in that view: each object's centre as normalised image coordinates
(u, v in [-1, 1], ``grid_sample``'s convention, pixel corners at +-1) and its yaw relative to
the azimuth of the ray from the camera to the object (what the image shows of an object's
turn depends on that difference, not on the yaw alone). ``to_table`` lifts an answer back:
the ray through (u, v) meets the plane at the shape's resting height (exact geometry, no
learning), and the yaw gets the ray's azimuth back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from renderer.pinhole import (Cameras, PerCamera, canonical_cameras, coverage, join_cameras, sample_grid,
                              sampling_grid, spec_cameras)
from renderer.scene import SceneBatch
from renderer.world import World

NUM_CAMERA_FEATURES = 3
_DISTANCE_CENTRE, _DISTANCE_SCALE = 1.15, 0.45


@dataclass(frozen=True)
class ViewInput:
    """What the network reads for B images; ``v[lo:hi]`` selects images.

    pixels: (B, 3, S, S) float in [0, 1], the canonical views (0 where the camera saw nothing).
    coverage: (B, 1, S, S) float 0/1, where the camera's image reaches.
    features: (B, NUM_CAMERA_FEATURES) camera features (``camera_features``).
    view: the canonical cameras (S x S).
    """

    pixels: torch.Tensor
    coverage: torch.Tensor
    features: torch.Tensor
    view: Cameras

    @property
    def shape(self) -> torch.Size:
        return self.pixels.shape

    def __getitem__(self, index: slice) -> ViewInput:
        return ViewInput(self.pixels[index], self.coverage[index], self.features[index], self.view.select(index))

    def to(self, device: torch.device | str) -> ViewInput:
        return ViewInput(self.pixels.to(device), self.coverage.to(device), self.features.to(device),
                         self.view.to(device))


@dataclass(frozen=True)
class CameraImages:
    """B camera images of one size with their cameras; ``c[lo:hi]`` selects images.

    pixels: (B, 3, H, W) float in [0, 1]. cameras: B cameras for H x W images.
    """

    pixels: torch.Tensor
    cameras: Cameras

    @property
    def shape(self) -> torch.Size:
        return self.pixels.shape

    def __getitem__(self, index: slice) -> CameraImages:
        return CameraImages(self.pixels[index], self.cameras.select(index))


def views_of(images: CameraImages, world: World) -> ViewInput:
    """Camera images -> the network's input, each warped to its canonical view (``warp_to_view``)."""
    return stack_inputs([warp_to_view(images.pixels[i], images.cameras.select(slice(i, i + 1)), world)
                         for i in range(images.pixels.shape[0])])


def view_cameras(cameras: Cameras, world: World) -> Cameras:
    """The canonical views (``world.image_size`` a side) of ``cameras``."""
    return canonical_cameras(cameras.position, world.image_size, world.view_half_width)


def camera_features(view: Cameras) -> torch.Tensor:
    """(B, 3): sin and cos of the view's elevation (seen from the table centre) and its
    distance, centred and scaled to about [-1, 1] over the envelope."""
    distance = view.position.norm(dim=-1)
    el = torch.asin((view.position[:, 2] / distance).clamp(-1, 1))
    return torch.stack([torch.sin(el), torch.cos(el), (distance - _DISTANCE_CENTRE) / _DISTANCE_SCALE], dim=-1)


def view_input(pixels: torch.Tensor, cameras: Cameras, world: World) -> ViewInput:
    """Canonical views already rendered (a photo dataset's images, (B, 3, S, S)) for
    ``cameras`` -> ``ViewInput``; pixels the cameras did not see are set to 0."""
    view = view_cameras(cameras, world)
    cover = coverage(cameras, view)[:, None].to(pixels.dtype)
    return ViewInput(pixels * cover, cover, camera_features(view), view)


def prefilter_factor(camera: Cameras, view: Cameras) -> int:
    """How many times finer than its canonical ``view`` an image of ``camera`` (batch of one)
    is, as the integer box-filter factor ``warp_to_view`` shrinks it by first (1: none)."""
    ratio = float(camera.focal[0, 1] / view.focal[0, 1])
    return int(ratio / 1.5) + 1 if ratio > 1.5 else 1


def shrunk_camera(camera: Cameras, factor: int, height: int, width: int) -> Cameras:
    """The camera of its image box-filtered by ``factor`` (pixel corners map to corners), now
    ``height`` x ``width``."""
    return Cameras(camera.position, camera.rotation, camera.focal / factor, camera.principal / factor, height, width,
                   camera.distortion)


@dataclass(frozen=True)
class WarpPlan:
    """What warping one camera's images to their view needs, the pixels aside: the view, the
    box-filter factor, and the sampling grid (1, S, S, 2) with its coverage (1, 1, S, S) for
    the camera of the filtered image. A plan depends on the camera and the world alone."""

    view: Cameras
    factor: int
    grid: torch.Tensor
    cover: torch.Tensor
    features: torch.Tensor


# the last cameras' plans: most requests come from a handful of cameras, and the geometry costs
# more than the warp itself
_PLANS: PerCamera[WarpPlan] = PerCamera(64)


def _make_plan(camera: Cameras, world: World) -> WarpPlan:
    view = view_cameras(camera, world)
    factor = prefilter_factor(camera, view)
    if factor > 1:
        camera = shrunk_camera(camera, factor, camera.height // factor, camera.width // factor)
    grid, inside = sampling_grid(camera, view)
    return WarpPlan(view, factor, grid, inside[:, None].float(), camera_features(view))


def warp_plan(camera: Cameras, world: World) -> WarpPlan:
    """The (remembered) ``WarpPlan`` of one camera (batch of 1) for images of its size."""
    if camera.batch_size != 1:
        raise ValueError(f"warp_to_view takes one camera, got {camera.batch_size}")
    return _PLANS.get(camera, (world.image_size, world.view_half_width), lambda: _make_plan(camera, world))


def warp_to_view(image: torch.Tensor, camera: Cameras, world: World) -> ViewInput:
    """One camera image (3, H, W) float in [0, 1] with its camera (batch of 1) -> its
    ``ViewInput`` (batch of 1). The image is first box-filtered down while it is more than
    1.5 times finer than the view (bilinear resampling alone would alias)."""
    if tuple(image.shape[-2:]) != (camera.height, camera.width):
        raise ValueError(f"the image is {tuple(image.shape[-2:])} but its camera is {(camera.height, camera.width)}")
    plan = warp_plan(camera, world)
    src = image[None]
    if plan.factor > 1:
        h, w = image.shape[-2] // plan.factor, image.shape[-1] // plan.factor
        src = F.adaptive_avg_pool2d(src[..., : h * plan.factor, : w * plan.factor], (h, w))
    pixels = sample_grid(src, plan.grid, plan.cover)
    return ViewInput(pixels, plan.cover.to(pixels.dtype).clone(), plan.features.clone(), plan.view)


def stack_inputs(inputs: list[ViewInput]) -> ViewInput:
    """Join single-image inputs into one batch."""
    view = join_cameras([i.view for i in inputs])
    return ViewInput(torch.cat([i.pixels for i in inputs]), torch.cat([i.coverage for i in inputs]),
                     torch.cat([i.features for i in inputs]), view)


def ray_azimuth(view: Cameras, xy: torch.Tensor) -> torch.Tensor:
    """(B, N) azimuth (radians) of the horizontal direction from each camera to table points
    ``xy`` (B, N, 2)."""
    d = xy - view.position[:, None, :2].to(xy)
    return torch.atan2(d[..., 1], d[..., 0])


def wrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles into [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def to_view(scene: SceneBatch, view: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """A table-frame scene -> what the network predicts in the view: centres (B, N, 2) as
    normalised image coordinates, yaw relative to the ray azimuth (B, N). Absent slots: 0."""
    uv, _ = view.project(scene.position)
    size = torch.tensor([view.width, view.height], dtype=uv.dtype, device=uv.device)
    centre = (uv / size * 2 - 1) * scene.present[..., None]
    yaw = wrap(scene.yaw - ray_azimuth(view, scene.position[..., :2])) * scene.present
    return centre, yaw


def to_table(centre: torch.Tensor, yaw: torch.Tensor, shape: torch.Tensor, view: Cameras,
             world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of ``to_view`` for predicted objects: centres (B, T, 2) normalised view
    coordinates, relative yaw (B, T), shapes (B, T) -> table positions (B, T, 3) (on the ray,
    at the shape's resting height) and yaw (B, T) in the table frame."""
    rest = torch.tensor([s.resting_z for s in world.shapes], dtype=centre.dtype, device=centre.device)[shape]
    size = torch.tensor([view.width, view.height], dtype=centre.dtype, device=centre.device)
    uv = (centre + 1) / 2 * size
    position = view.lift(uv, rest)
    return position, wrap(yaw + ray_azimuth(view, position[..., :2]))


def dataset_views(data, index: np.ndarray, world: World) -> ViewInput:
    """A photo dataset's images ``index`` (``renderer.dataset.SceneDataset`` made with
    ``--photo``) as one ``ViewInput``, in the order of ``index``."""
    pixels = torch.from_numpy(np.array(data.images[index])).permute(0, 3, 1, 2).float().div_(255.0)
    groups = data.cameras(index)  # one per image size, rows in the order of ``index``
    joined = stack_inputs([view_input(pixels[rows], cams, world) for rows, cams in groups])
    order = np.concatenate([rows for rows, _ in groups])
    return joined[torch.from_numpy(np.argsort(order, kind="stable"))]


def as_view_input(images: torch.Tensor | CameraImages | ViewInput, world: World) -> ViewInput:
    """Whatever a caller has -> the view network's input: a ``ViewInput`` as is; camera images
    warped to their views; a plain image batch (B, 3, H, W) as images from the world's fixed
    camera (its fov across the shorter side)."""
    if isinstance(images, ViewInput):
        return images
    if not isinstance(images, CameraImages):
        b, _, h, w = images.shape
        images = CameraImages(images, spec_cameras(world.camera, b, h, w))
    return views_of(images, world)
