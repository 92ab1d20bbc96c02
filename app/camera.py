"""The camera of an image, as a client states it, and its conversion to the renderer's cameras.

A camera is its pose in the table frame (REP-103: metres, z up, origin at the table centre)
and its pinhole intrinsics for the image it took:

- ``position``: the centre of projection {x, y, z}.
- ``orientation``: unit quaternion {x, y, z, w} of the camera frame in the table frame. By
  default the ROS *optical* frame (``convention: "optical"``: x right, y down, z forward, as
  ``camera_info`` and ``*_optical_frame`` use); ``convention: "body"`` takes the REP-103 body
  frame of a camera link instead (x forward, y left, z up).
- intrinsics, one of: ``fx``, ``fy``, ``cx``, ``cy`` in pixels; ``K``, the 9 numbers of a ROS
  ``camera_info`` K matrix, row-major, as given; or ``fov_deg``, the vertical field of view
  (square pixels, principal point at the image centre).
- ``width``, ``height``: the image size the intrinsics are for (default: the image sent). An
  image sent at another size with the same aspect scales the intrinsics; another aspect is
  refused.
- optionally the lens distortion as ``camera_info`` states it: ``D`` (k1, k2, p1, p2[, k3[, k4,
  k5, k6]]) and ``distortion_model`` (``plumb_bob`` or ``rational_polynomial``; omitted, it
  follows from the number of terms). The image is read through it (no need to rectify first);
  a distortion that is not one-to-one out to the image's corners, or that moves them by more
  than a factor of 2, is refused. ``equidistant`` (fisheye) lenses are not supported: rectify.

The fields an ``/infer`` answer adds to its ``camera`` (``look_at``, ``distance_m``,
``elevation_deg``, ``optical_frame``...) are accepted and ignored, so an answer's camera can be
sent back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

from app.errors import Unprocessable

from renderer.pinhole import Cameras, lens_coefficients, lens_stretch
from renderer.scene import quat_to_matrix

# the body frame's axes seen from the optical frame: optical x = -body y, y = -body z, z = body x
_BODY_FROM_OPTICAL = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
MAX_CAMERA_CHARS = 4096  # a camera is a few hundred characters
MAX_TANGENTIAL = 0.1
MAX_LENS_STRETCH = 2.0  # the lens may move the image's corners by up to this factor, in or out
DISTORTION_MODELS = {"plumb_bob": (0, 4, 5), "rational_polynomial": (0, 4, 5, 8)}  # model: term counts allowed


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: FiniteFloat
    y: FiniteFloat
    z: FiniteFloat


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: FiniteFloat
    y: FiniteFloat
    z: FiniteFloat
    w: FiniteFloat


class CameraIn(BaseModel):
    """A camera (see the module docstring). Unknown fields are refused (a misspelt field would
    otherwise be a silently wrong camera), except those an answer's ``camera`` carries."""

    model_config = ConfigDict(extra="forbid")

    position: Point = Field(description="centre of projection in the table frame, metres")
    orientation: Rotation = Field(description="unit quaternion (x, y, z, w) of the camera frame in the table frame")
    convention: Literal["optical", "body"] = Field(
        "optical", description="orientation is of the optical frame (x right, y down, z forward) or the body frame "
                               "(x forward, y left, z up)")
    fx: FiniteFloat | None = Field(None, gt=0, description="focal length along u, pixels")
    fy: FiniteFloat | None = Field(None, gt=0, description="focal length along v, pixels")
    cx: FiniteFloat | None = Field(None, description="principal point u, pixels")
    cy: FiniteFloat | None = Field(None, description="principal point v, pixels")
    K: list[FiniteFloat] | None = Field(None, min_length=9, max_length=9,
                                       description="ROS camera_info K, row-major [fx 0 cx; 0 fy cy; 0 0 1]")
    fov_deg: FiniteFloat | None = Field(None, gt=1, lt=179, description="vertical field of view, degrees")
    D: list[Annotated[FiniteFloat, Field(ge=-100, le=100)]] | None = Field(
        None, max_length=8, description="lens distortion as camera_info's D: k1, k2, p1, p2[, k3[, k4, k5, k6]]")
    distortion_model: str | None = Field(None, description="camera_info's distortion_model: 'plumb_bob' or "
                                                           "'rational_polynomial' (default: from the length of D)")
    width: int | None = Field(None, ge=1, le=100_000, description="image width the intrinsics are for")
    height: int | None = Field(None, ge=1, le=100_000, description="image height the intrinsics are for")
    look_at: dict | None = Field(None, description="ignored (an answer's camera carries it)")
    distance_m: float | None = Field(None, description="ignored")
    elevation_deg: float | None = Field(None, description="ignored")
    azimuth_deg: float | None = Field(None, description="ignored")
    roll_deg: float | None = Field(None, description="ignored")
    optical_frame: str | None = Field(None, description="ignored")

    @model_validator(mode="after")
    def _one_intrinsics(self) -> CameraIn:
        direct = [v is not None for v in (self.fx, self.fy, self.cx, self.cy)]
        if self.K is not None:
            k = self.K
            if k[0] <= 0 or k[4] <= 0 or abs(k[1]) > 1e-6 or abs(k[3]) > 1e-6 or k[6:] != [0.0, 0.0, 1.0]:
                raise ValueError("K must be a pinhole matrix [fx, 0, cx, 0, fy, cy, 0, 0, 1] with fx, fy > 0")
        elif all(direct):
            pass
        elif any(direct):
            raise ValueError("give all of fx, fy, cx, cy (or K, or fov_deg)")
        elif self.fov_deg is None:
            raise ValueError("the camera needs intrinsics: fx, fy, cx, cy; or K; or fov_deg")
        q = self.orientation
        if math.hypot(q.x, q.y, q.z, q.w) < 1e-6:  # hypot: no overflow for huge components
            raise ValueError("orientation must be a non-zero quaternion")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        terms = len(self.D or [])
        model = self.distortion_model or ("rational_polynomial" if terms == 8 else "plumb_bob")
        if model not in DISTORTION_MODELS:
            raise ValueError(f"distortion_model {model[:40]!r} is not supported; supported: "
                             f"{sorted(DISTORTION_MODELS)} (rectify fisheye images first)")
        if terms not in DISTORTION_MODELS[model]:
            raise ValueError(f"D has {terms} terms; {model} takes {' or '.join(map(str, DISTORTION_MODELS[model][1:]))}")
        if terms and max(abs(v) for v in self.D[2:4]) > MAX_TANGENTIAL:
            raise ValueError(f"D's tangential terms p1, p2 must be within +-{MAX_TANGENTIAL:g} (a lens's are ~0.001)")
        return self


def to_cameras(camera: CameraIn, height: int, width: int) -> Cameras:
    """The camera of an image of ``height x width`` pixels, as a batch of one. ValueError when
    the stated image size has another aspect than the image."""
    q = camera.orientation
    norm = math.hypot(q.x, q.y, q.z, q.w)  # unit first: squaring a huge component would overflow
    rot = quat_to_matrix(torch.tensor([q.x / norm, q.y / norm, q.z / norm, q.w / norm], dtype=torch.float64))
    if camera.convention == "body":
        rot = rot @ _BODY_FROM_OPTICAL
    if camera.K is not None:
        fx, fy, cx, cy = camera.K[0], camera.K[4], camera.K[2], camera.K[5]
    elif camera.fx is not None:
        fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    else:
        h0 = camera.height or height
        w0 = camera.width or width
        fy = h0 / 2 / math.tan(math.radians(camera.fov_deg) / 2)
        fx, cx, cy = fy, w0 / 2, h0 / 2
    sx = sy = 1.0
    if camera.width is not None:
        sx, sy = width / camera.width, height / camera.height
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise ValueError(f"the camera is for {camera.width}x{camera.height} images; the image is {width}x{height}, "
                             f"another aspect ratio (crop or resize the intrinsics too)")
    p = camera.position
    cams = Cameras(torch.tensor([[p.x, p.y, p.z]]), rot[None].float(), torch.tensor([[fx * sx, fy * sy]]),
                   torch.tensor([[cx * sx, cy * sy]]), height, width, lens_coefficients(camera.D))
    if not bool(cams.finite().all()):
        raise ValueError("the camera's numbers are too large to compute with (not finite as 32-bit floats)")
    if cams.distortion is not None:
        check_lens(cams)
    return cams


def check_lens(cams: Cameras) -> None:
    """ValueError where the lens of ``cams`` (one camera) cannot be undone over its image."""
    corners = torch.tensor([[0.0, 0.0], [cams.width, 0.0], [0.0, cams.height], [cams.width, cams.height]])
    radius = ((corners - cams.principal[0]) / cams.focal[0]).norm(dim=-1).amax()
    stretch = float(lens_stretch(cams.lens(), radius[None])[0])
    if not math.isfinite(stretch):
        raise ValueError("camera D: the lens distortion is not one-to-one out to the image's corners "
                         "(it would show some directions twice); check D, or rectify the image first")
    if not 1 / MAX_LENS_STRETCH <= stretch <= MAX_LENS_STRETCH:
        raise ValueError(f"camera D: the lens distortion moves the image's corners by a factor of {stretch:.3g}; "
                         f"at most {MAX_LENS_STRETCH:g} either way is supported (rectify the image first)")


def parse_camera(text: str, loc: tuple[str | int, ...]) -> CameraIn:
    """A camera's JSON text -> ``CameraIn``; ``Unprocessable`` (422) naming the first bad field
    under ``loc`` (e.g. ``("query", "camera", "fx")``)."""
    if len(text) > MAX_CAMERA_CHARS:
        raise Unprocessable(loc, f"camera JSON is longer than {MAX_CAMERA_CHARS} characters")
    try:
        return CameraIn.model_validate_json(text)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        where = [str(x)[:64] for x in first.get("loc", ())]
        return_msg = first.get("msg", "invalid camera")[:300]
        raise Unprocessable((*loc, *where), return_msg) from None


def load_camera_file(path: str | Path) -> CameraIn:
    """A deployment's camera file -> ``CameraIn``; ValueError naming the file and the problem."""
    try:
        return CameraIn.model_validate_json(Path(path).read_text())
    except (OSError, ValidationError) as e:
        raise ValueError(f"camera file {path}: {e}") from None
