"""Request and response schemas: the API contract (docs/DESIGN.md §4) as pydantic models.

Frame and units everywhere: the world frame of ROS REP-103 (right-handed, z up, origin at the
table centre), metres, quaternions in ``x, y, z, w`` order; ``yaw_deg`` is the same turn about
+z in degrees, for people. Image coordinates are pixels of the image that was sent, (0, 0) at
its top-left corner, u to the right, v down.

Input models ignore unknown fields, so the JSON ``/infer`` returns (objects with ids,
confidences and boxes; or the whole answer) is valid ``/render`` input.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, SerializerFunctionWrapHandler, model_serializer

from app.camera import CameraIn
from app.config import RENDER_SIDE_CAP

FRAME_ID = "world"
UNITS = {"position": "m", "orientation": "quaternion (x, y, z, w)", "yaw_deg": "degree",
         "bbox": "pixel [u0, v0, u1, v1] of the image sent", "size": "m"}


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Body(_In):
    """A JSON body part: strict types, so ``false`` is not a number and ``"3"`` not a count
    (integers are still accepted where a float is asked)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- geometry


class Vector3(_Out):
    x: float
    y: float
    z: float


class Quaternion(_Out):
    """Unit quaternion, x, y, z, w order (geometry_msgs/Quaternion)."""

    x: float
    y: float
    z: float
    w: float


class PositionIn(_Body):
    """Object centre in the world frame, metres. ``z`` defaults to the shape's resting height."""

    x: FiniteFloat
    y: FiniteFloat
    z: FiniteFloat | None = None


class QuaternionIn(_Body):
    """Any non-zero quaternion (x, y, z, w); it is normalised. Full 3D turns render, but the
    prior and the network are tabletop: they only ever produce turns about +z (yaw)."""

    x: FiniteFloat = 0.0
    y: FiniteFloat = 0.0
    z: FiniteFloat = 0.0
    w: FiniteFloat = 1.0


# ---------------------------------------------------------------- /render


class SceneObject(_Body):
    """One object to draw. Orientation: ``orientation`` if given, else ``yaw_deg``, else none."""

    shape: str = Field(examples=["cube"], description="a shape name from GET /v1/model")
    color: str = Field(examples=["red"], description="a colour name from GET /v1/model")
    position: PositionIn
    orientation: QuaternionIn | None = None
    yaw_deg: FiniteFloat | None = None


class RecordedImage(_Body):
    """The ``image`` of an /infer answer: the size of the image the objects were found in."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)


class KeyLightIn(_Body):
    """The main light: where it comes from and its colour."""

    elevation_deg: FiniteFloat = Field(50.0, ge=0, le=90, description="above the table plane")
    azimuth_deg: FiniteFloat = Field(140.0, description="direction it comes from, from +x toward +y")
    kelvin: FiniteFloat = Field(6500.0, ge=3000, le=7500, description="colour temperature")
    intensity: FiniteFloat = Field(0.55, ge=0, le=2)


class LookIn(_Body):
    """How /render draws: omitted, the world's own look (flat shading, one light, grey table).
    ``seed`` draws a look from the training prior (lights, shading, table, backdrop, shadows,
    sensor); the other fields then set parts of it."""

    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="draw a random look from the prior")
    key_light: KeyLightIn | None = None
    ambient: FiniteFloat | None = Field(None, ge=0, le=2)
    smooth: bool | None = Field(None, description="smooth-shade curved surfaces")
    apex_up: bool | None = Field(None, description="with smooth: shade a cone's apex as per-vertex mesh normals do "
                                                   "(averaged, straight up), as most mesh renderers draw it")
    welded: bool | None = Field(None, description="with smooth: every edge soft, vertex normals averaged over the "
                                                  "faces meeting there (a mesh tool's default smooth shading: "
                                                  "rounded-looking edges and rims)")
    specular: FiniteFloat | None = Field(None, ge=0, le=2, description="highlight strength")
    table_rgb: list[FiniteFloat] | None = Field(None, min_length=3, max_length=3)
    background_rgb: list[FiniteFloat] | None = Field(None, min_length=3, max_length=3)
    shadow_strength: FiniteFloat | None = Field(None, ge=0, le=0.95, description="contact shadow darkness")
    noise_std: FiniteFloat | None = Field(None, ge=0, le=0.5, description="sensor noise, in [0, 1] pixel units")
    white_balance: list[Annotated[FiniteFloat, Field(ge=0.25, le=4)]] | None = Field(
        None, min_length=3, max_length=3, description="the camera's red, green, blue gains, each 0.25-4 (1, 1, 1: "
                                                      "balanced for the light)")
    gamma: FiniteFloat | None = Field(None, ge=0.3, le=3, description="tone curve: values raised to 1 / gamma")
    saturation: FiniteFloat | None = Field(None, ge=0, le=2, description="colour saturation factor (0: grey)")
    glare: FiniteFloat | None = Field(None, ge=0, le=0.5, description="veiling glare: share of full scale added")


class RenderRequest(_Body):
    """A scene to draw. Size: ``width`` and ``height``; one of them alone makes a square; with
    neither, the ``image`` an /infer answer records (scaled down to fit the render limit, aspect
    kept), else the network's image size (64)."""

    objects: list[SceneObject] = Field(default_factory=list, max_length=64,
                                       description="at most N objects (GET /v1/model: max_objects)")
    width: int | None = Field(None, ge=1, le=RENDER_SIDE_CAP, description="pixels; the limit is "
                                                                            "AIRSCENE_MAX_RENDER_SIDE")
    height: int | None = Field(None, ge=1, le=RENDER_SIDE_CAP)
    image: RecordedImage | None = Field(None, description="size of the image an /infer answer came from; "
                                                          "the default size when width and height are not given")
    camera: CameraIn | None = Field(None, description="the camera to render from (the /infer camera schema); "
                                                      "default: the deployment's or the world's camera")
    look: LookIn | None = Field(None, description="the look (lights, shading, table, sensor); default: the "
                                                  "world's own")

    def size(self, default: int, max_side: int) -> tuple[int, int]:
        """(width, height) to render: as asked; else the recorded image's, scaled down to fit
        ``max_side``; else ``default`` square. An asked size above ``max_side`` is the caller's
        to refuse."""
        if self.width or self.height:
            return self.width or self.height, self.height or self.width  # type: ignore[return-value]
        if self.image is None:
            return default, default
        w, h = self.image.width, self.image.height
        k = min(1.0, max_side / max(w, h))
        return max(1, round(w * k)), max(1, round(h * k))

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"examples": [{
        "objects": [{"shape": "cube", "color": "red", "position": {"x": 0.1, "y": -0.05},
                     "orientation": {"x": 0, "y": 0, "z": 0.3827, "w": 0.9239}},
                    {"shape": "cone", "color": "blue", "position": {"x": -0.12, "y": 0.1}}],
        "width": 256, "height": 256}]})


# ---------------------------------------------------------------- /infer


class InferParams(_In):
    """Query options of POST /infer."""

    refine: int = Field(0, ge=0, description="test-time refinement steps (render-and-compare); 0 = "
                                             "the amortised answer alone")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="drop objects whose confidence "
                                                                   "is below this")
    format: Literal["json", "ros"] = Field("json", description="'ros': vision_msgs/Detection3DArray")
    camera: str | None = Field(None, max_length=4096, description="the image's camera as JSON (position, orientation, "
                                                                 "intrinsics: see GET /v1/model's camera_envelope); "
                                                                 "with multipart, a 'camera' field does the same")
    residual: bool = Field(False, description="also return the reconstruction's residual image "
                                              "(quality.residual_png)")


class DetectedObject(_Out):
    id: int = Field(description="0-based, in the order the network found the objects")
    shape: str
    color: str
    confidence: float = Field(description="q(z_pres = 1): probability that this object is there")
    shape_confidence: float = Field(description="probability of the shape given")
    color_confidence: float = Field(description="probability of the colour given")
    position: Vector3 = Field(description="centre of the object's bounding box, world frame, m")
    orientation: Quaternion = Field(description="turn about +z as a quaternion (x, y, z, w)")
    yaw_deg: float = Field(description="the same turn in degrees; 0 for shapes whose yaw is unobservable")
    bbox: list[float] = Field(min_length=4, max_length=4, description="[u0, v0, u1, v1] pixels in "
                                                                     "the image sent")
    fit: float = Field(ge=0, le=1, description="how well this object, rendered where and as it is said to be, "
                                               "explains its pixels: 1 = its silhouette separates it cleanly "
                                               "from the table, near 0 = nothing of that shape is there")


class CameraInfo(_Out):
    """The camera of the image (the one sent, else the deployment's or the world's default),
    for the image size of the answer. Optical frame: x right, y down, z forward (ROS camera
    convention); ``orientation`` is that frame in the world frame. ``fov_deg`` is vertical;
    ``look_at`` is where the optical axis meets the table, ``distance_m`` how far away."""

    position: Vector3
    orientation: Quaternion
    fov_deg: float
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    look_at: Vector3
    distance_m: float
    elevation_deg: float
    optical_frame: str
    distortion_model: str | None = Field(None, description="the lens model of D, where the camera stated one")
    D: list[float] | None = Field(None, description="lens distortion the image was read through (camera_info's D)")


class ImageSize(_Out):
    width: int
    height: int


class ModelRef(_Out):
    version: str
    device: str
    calibrated: bool = Field(description="whether the weights carry a calibration (temperatures, trust, "
                                         "world limits); without one, probabilities are as trained and "
                                         "in_world is always true")


class Quality(_Out):
    """How far to trust the answer: the generative model's check (the answer rendered with the
    image's camera and compared with the image; see the model card) and the calibrated
    probability that it is right."""

    fit: float = Field(ge=0, le=1, description="the image's fit: 1 = every pixel explained by the answer; "
                                               "the worst object's fit, lowered by unexplained table")
    trust: float = Field(ge=0, le=1, description="calibrated probability that the count and every object's "
                                                 "shape and colour are right")
    in_world: bool = Field(description="false: the image does not look like the world the model knows "
                                       "(its answer should not be used)")
    unexplained: float = Field(ge=0, le=1, description="share of bare table that does not look like table "
                                                       "(a missed or foreign object)")
    spill: float = Field(ge=0, le=1, description="largest share of a ring around a found object that looks like "
                                                 "the object, not the surface (an object larger than the world's)")
    outline: float = Field(ge=0, le=1, description="share of pixels along the drawn table's edge that look like "
                                                   "their side (table or floor): the table lies where the camera "
                                                   "says")
    fill: float = Field(ge=0, le=1, description="least share, over found objects unlike the table, of the "
                                                "object's drawn pixels that do not look like table (something "
                                                "thinner or flatter than the shape said); 1 where none qualifies")
    step: float = Field(ge=0, le=1, description="colour difference across the drawn table's edge over the "
                                                "difference a few pixels further apart: a table's edge is a step, "
                                                "a smooth gradient is not; 1 where table and floor are too alike "
                                                "to tell")
    table_spread: float = Field(ge=0, description="mean colour distance of bare table from the table's colour, "
                                                  "shading and pixel-to-pixel sensor noise removed (texture, "
                                                  "patches, or not a table)")
    edge_contrast: float | None = Field(description="colour distance between table and floor, scaled up in "
                                                    "dim light; null where no floor is in view")
    foreign: float | None = Field(None, ge=0, le=1, description="the out-of-set detector's score: how much the "
                                                               "network's image features look like a scene holding "
                                                               "an object outside the shape set (a score, not a "
                                                               "probability); null where the weights hold no "
                                                               "detector")
    residual_png: str | None = Field(None, description="with residual=true: |image - reconstruction| in the "
                                                       "network's view, base64 PNG")


class Timing(_Out):
    """Milliseconds. ``inference`` is the batched forward pass this image shared with
    ``batch_size - 1`` others; ``queue`` the wait for it."""

    decode: float
    queue: float
    inference: float
    refine: float
    total: float


class InferContext(_Out):
    """What every /infer answer carries beside its objects, in either format. A subclass's own
    fields come first in the JSON (``objects``, ``count``; ``header``, ``detections``), these after."""

    frame_id: str = FRAME_ID
    units: dict[str, str] = Field(default_factory=lambda: dict(UNITS))
    image: ImageSize
    camera: CameraInfo
    model: ModelRef
    quality: Quality
    refine_steps: int
    batch_size: int
    timing_ms: Timing

    @model_serializer(mode="wrap")
    def _own_fields_first(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)
        own = [k for k in data if k not in InferContext.model_fields]
        return {**{k: data[k] for k in own}, **{k: v for k, v in data.items() if k not in own}}


class InferResponse(InferContext):
    objects: list[DetectedObject]
    count: int


# ---------------------------------------------------------------- ROS (vision_msgs)


class RosTime(_Out):
    sec: int
    nanosec: int


class RosHeader(_Out):
    stamp: RosTime
    frame_id: str


class RosPose(_Out):
    position: Vector3
    orientation: Quaternion


class RosPoseWithCovariance(_Out):
    pose: RosPose
    covariance: list[float] = Field(description="36 values, row-major 6x6; all 0 (unknown)")


class RosObjectHypothesis(_Out):
    class_id: str = Field(description="'<color>_<shape>', e.g. 'red_cube'")
    score: float


class RosObjectHypothesisWithPose(_Out):
    hypothesis: RosObjectHypothesis
    pose: RosPoseWithCovariance


class RosBoundingBox3D(_Out):
    center: RosPose
    size: Vector3


class RosDetection3D(_Out):
    header: RosHeader
    results: list[RosObjectHypothesisWithPose]
    bbox: RosBoundingBox3D
    id: str


class RosInferResponse(InferContext):
    """``header`` and ``detections`` are a vision_msgs/Detection3DArray; the other fields are
    the same context as the JSON answer."""

    header: RosHeader
    detections: list[RosDetection3D]


# ---------------------------------------------------------------- model, health


class ShapeInfo(_Out):
    name: str
    size: Vector3 = Field(description="bounding box in the object's frame (x length, y width, z height), m")
    resting_z: float = Field(description="z of the centre when the object stands on the table, m")
    yaw_symmetry_deg: float | None = Field(description="smallest turn mapping the shape onto itself; "
                                                       "null = any (yaw unobservable)")


class ColorInfo(_Out):
    name: str
    rgb: list[float]


class PlacementArea(_Out):
    x_min: float
    x_max: float
    y_min: float
    y_max: float


class ModelInfo(_Out):
    version: str
    weights: str
    sha256: str
    device: str
    max_objects: int
    image_size: int
    shapes: list[ShapeInfo]
    colors: list[ColorInfo]
    table_size_m: float
    placement_area: PlacementArea
    camera: CameraInfo
    camera_envelope: dict = Field(description="the cameras the model supports (others are refused with a 422): "
                                              "ranges of elevation, distance, vertical fov, roll, aspect, look-at radius")
    frame_id: str = FRAME_ID
    units: dict[str, str] = Field(default_factory=lambda: dict(UNITS))
    orientation_note: str = ("/render accepts any orientation quaternion (full 3D); the prior and "
                             "the network are tabletop: objects rest on the table and turn about z only")
    metrics: dict = Field(description="evaluation metrics from the model card (weights .json 'meta')")
    card: dict = Field(description="the rest of the model card's metadata")


class Status(_Out):
    status: str
    detail: str | None = None


class ServiceLimits(_Out):
    """The limits this server enforces (its ``AIRSCENE_*`` settings), for clients and the page."""

    max_refine_steps: int = Field(description="largest 'refine' of POST /infer")
    max_images: int = Field(description="most images in one POST /infer")
    max_body_bytes: int = Field(description="largest request body, bytes")
    max_pixels: int = Field(description="most pixels in one image")
    max_request_pixels: int = Field(description="most pixels in all the images of one POST /infer together")
    max_render_side: int = Field(description="largest width or height of POST /render")
