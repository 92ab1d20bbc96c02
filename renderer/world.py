"""The world: one frozen config object for everything that draws or projects.

Conventions (DESIGN.md §2, ROS REP-103): right-handed, metres, radians, z up, origin at the
table centre. Quaternions are ``(x, y, z, w)``. PyTorch3D's camera conventions never leave
``renderer/``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class ShapeSpec:
    """One primitive.

    name: identifier used by the API (``"cube"``...).
    size: (length along x, width along y, height along z) of the bounding box in metres,
        in the object's own frame; the object's position is the box centre, so an object
        resting on the table has ``z = size[2] / 2``.
    yaw_symmetry_deg: the smallest yaw turn that maps the shape onto itself
        (90 for a cube, 180 for a box, 360 for no symmetry), or ``None`` when every turn does
        (sphere, cylinder, cone): yaw is then unobservable and not scored.
    """

    name: str
    size: tuple[float, float, float]
    yaw_symmetry_deg: float | None

    @property
    def resting_z(self) -> float:
        return self.size[2] / 2


@dataclass(frozen=True)
class ColorSpec:
    """A named palette entry; rgb in [0, 1] (linear, before shading)."""

    name: str
    rgb: RGB


@dataclass(frozen=True)
class CameraSpec:
    """Fixed pinhole camera looking at ``look_at`` from ``distance`` metres.

    fov_deg: field of view across the image's shorter side (the vertical one for the square
        images the network sees).
    elevation_deg: angle of the line of sight above the table plane.
    azimuth_deg: direction the camera sits in, measured in the table plane from +x toward +y;
        180 puts it on the -x side looking toward +x.
    """

    distance: float = 1.1
    elevation_deg: float = 60.0
    azimuth_deg: float = 180.0
    fov_deg: float = 45.0
    look_at: tuple[float, float, float] = (-0.04, 0.0, 0.0)
    znear: float = 0.05
    zfar: float = 10.0

    @property
    def position(self) -> tuple[float, float, float]:
        """Camera centre in world coordinates (metres)."""
        el = math.radians(self.elevation_deg)
        az = math.radians(self.azimuth_deg)
        ax, ay, az0 = self.look_at
        return (
            ax + self.distance * math.cos(el) * math.cos(az),
            ay + self.distance * math.cos(el) * math.sin(az),
            az0 + self.distance * math.sin(el),
        )


@dataclass(frozen=True)
class CameraEnvelope:
    """The cameras the model supports: a camera outside these ranges is refused, not answered.

    Each range is (low, high), inclusive. Measured on the camera's optical axis: the look-at
    point is where the axis meets the table plane z = 0.

    elevation_deg: angle of the optical axis below the horizontal.
    distance: metres from the camera centre to the look-at point.
    look_at_radius: how far (metres) the look-at point may lie from the table centre.
    fov_deg: vertical field of view (across the image height).
    roll_deg: turn of the image about the optical axis; 0 when the image's x axis is level.
    aspect: width / height of the image.
    min_side, max_side: image height and width in pixels.
    max_skew: largest allowed |fx / fy - 1| (non-square pixels).
    train_margin: the training prior draws from each range widened by this fraction of its
        width on both sides, so the edges of the envelope are not the edges of the data.
    """

    elevation_deg: tuple[float, float] = (30.0, 85.0)
    distance: tuple[float, float] = (0.75, 1.6)
    look_at_radius: float = 0.12
    fov_deg: tuple[float, float] = (30.0, 70.0)
    roll_deg: tuple[float, float] = (-15.0, 15.0)
    aspect: tuple[float, float] = (0.5, 2.4)
    min_side: int = 32
    max_side: int = 8192
    max_skew: float = 0.1
    train_margin: float = 0.05


@dataclass(frozen=True)
class LightSpec:
    """One directional light plus ambient, flat (per-face Lambert) shading.

    direction: vector pointing from the scene toward the light, world frame (normalised on use).
    ambient, diffuse: weights; a face of colour c and unit normal n is shaded
        ``c * (ambient + diffuse * max(0, n . l))``.
    """

    direction: tuple[float, float, float] = (-0.4, 0.3, 1.0)
    ambient: float = 0.5
    diffuse: float = 0.55


@dataclass(frozen=True)
class World:
    """Everything fixed about the generative model except the latents.

    table_size: side of the square table in metres; its top is the plane z = 0.
    placement_half_extent: object centres are drawn uniformly in
        [-e, e] x [-e, e] (the central 0.5 m square by default).
    image_size: side of the square image the network sees, in pixels.
    view_half_width: the network's canonical view (``renderer.pinhole.canonical_cameras``) maps
        this many metres across the line of sight at the table centre to half the image.
    max_objects: N, the number of object slots; the prior draws a count in 0..N.
    """

    shapes: tuple[ShapeSpec, ...] = (
        ShapeSpec("cube", (0.13, 0.13, 0.13), 90.0),
        ShapeSpec("box", (0.19, 0.095, 0.095), 180.0),
        ShapeSpec("wedge", (0.17, 0.11, 0.12), 360.0),
        ShapeSpec("sphere", (0.14, 0.14, 0.14), None),
        ShapeSpec("cylinder", (0.13, 0.13, 0.14), None),
        ShapeSpec("cone", (0.14, 0.14, 0.16), None),
    )
    colors: tuple[ColorSpec, ...] = (
        ColorSpec("red", (0.85, 0.12, 0.12)),
        ColorSpec("green", (0.12, 0.70, 0.18)),
        ColorSpec("blue", (0.15, 0.30, 0.90)),
        ColorSpec("yellow", (0.92, 0.82, 0.12)),
        ColorSpec("purple", (0.58, 0.18, 0.72)),
        ColorSpec("cyan", (0.12, 0.78, 0.82)),
    )
    table_size: float = 0.7
    table_rgb: RGB = (0.55, 0.55, 0.55)
    background_rgb: RGB = (0.12, 0.12, 0.15)
    placement_half_extent: float = 0.25
    camera: CameraSpec = field(default_factory=CameraSpec)
    light: LightSpec = field(default_factory=LightSpec)
    envelope: CameraEnvelope = field(default_factory=CameraEnvelope)
    image_size: int = 64
    view_half_width: float = 0.45
    max_objects: int = 3

    def __hash__(self) -> int:
        """The fields' hash, computed once per instance: worlds key the caches (meshes, face
        planes, table casts) that every answer consults several times."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_hash", None)  # string hashes differ from process to process
        return state

    def __post_init__(self) -> None:
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if not self.shapes or not self.colors:
            raise ValueError("a world needs at least one shape and one colour")
        names = [s.name for s in self.shapes]
        if len(set(names)) != len(names):
            raise ValueError(f"shape names must be unique, got {names}")

    @property
    def shape_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.shapes)

    @property
    def color_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.colors)

    def shape_index(self, name: str) -> int:
        try:
            return self.shape_names.index(name)
        except ValueError:
            raise ValueError(f"unknown shape {name!r}; known: {list(self.shape_names)}") from None

    def color_index(self, name: str) -> int:
        try:
            return self.color_names.index(name)
        except ValueError:
            raise ValueError(f"unknown color {name!r}; known: {list(self.color_names)}") from None

    def with_(self, **changes: Any) -> World:
        """A copy with some fields replaced (``world.with_(max_objects=2)``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``World.from_dict`` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> World:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown World fields: {sorted(unknown)}")
        d = dict(d)
        if "shapes" in d:
            d["shapes"] = tuple(
                ShapeSpec(s["name"], tuple(s["size"]), s["yaw_symmetry_deg"]) for s in d["shapes"]
            )
        if "colors" in d:
            d["colors"] = tuple(ColorSpec(c["name"], tuple(c["rgb"])) for c in d["colors"])
        for key, typ in (("camera", CameraSpec), ("light", LightSpec), ("envelope", CameraEnvelope)):
            if key in d and isinstance(d[key], dict):
                d[key] = typ(**{k: tuple(v) if isinstance(v, list) else v for k, v in d[key].items()})
        for key in ("table_rgb", "background_rgb"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
