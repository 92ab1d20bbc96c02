"""The one converter between the API's pydantic models and the tensors of ``renderer``/``inference``.

Requests -> ``SceneBatch`` (``scene_from_objects``), the engine's results -> ``DetectedObject``
lists (``objects``, ``detections``), the camera and model info, and the JSON answer -> its
vision_msgs shape (``to_ros``). The engine itself never sees a schema. Scene errors
are raised as 422s whose ``loc`` names the field, e.g. ``["body", "objects", 2, "shape"]``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from collections.abc import Sequence
from functools import lru_cache

import torch

from app.camera import DISTORTION_MODELS, MAX_LENS_STRETCH, MAX_TANGENTIAL
from app.engine import Engine, InferResult
from app.errors import Unprocessable
from app.schemas import (
    LookIn,
    CameraInfo,
    ColorInfo,
    DetectedObject,
    InferContext,
    InferResponse,
    ModelInfo,
    PlacementArea,
    RenderRequest,
    RosBoundingBox3D,
    RosDetection3D,
    RosHeader,
    RosInferResponse,
    RosObjectHypothesis,
    RosObjectHypothesisWithPose,
    RosPose,
    RosPoseWithCovariance,
    RosTime,
    SceneObject,
    ShapeInfo,
    Vector3,
)
from inference.api import object_dicts
from renderer.appearance import Look, LookPrior, default_look, kelvin_rgb, sample_looks
from renderer.camera import camera_dict, camera_info
from renderer.scene import SceneBatch, quat_to_yaw, yaw_to_quat
from renderer.world import World

MAX_ABS_POSITION_M = 10.0  # a scene object farther than this from the table centre is a mistake


def scene_from_objects(objects: Sequence[SceneObject], world: World,
                       loc: tuple[str | int, ...] = ("body", "objects")) -> SceneBatch:
    """Request objects -> a one-scene batch (B = 1, N = world.max_objects slots, present first).

    z defaults to each shape's resting height; orientation is the normalised quaternion, else
    ``yaw_deg`` about +z, else none. Raises ``Unprocessable`` naming the first bad field.
    """
    n = world.max_objects
    if len(objects) > n:
        raise Unprocessable(loc, f"at most {n} objects per scene (the model's N), got {len(objects)}")
    shape, color, position, quat = [0] * n, [0] * n, [[0.0, 0.0, 0.0]] * n, [[0.0, 0.0, 0.0, 1.0]] * n
    for i, o in enumerate(objects):
        if o.shape not in world.shape_names:
            raise Unprocessable((*loc, i, "shape"), f"unknown shape {o.shape[:40]!r}; known: {list(world.shape_names)}")
        if o.color not in world.color_names:
            raise Unprocessable((*loc, i, "color"), f"unknown color {o.color[:40]!r}; known: {list(world.color_names)}")
        s = world.shape_index(o.shape)
        z = world.shapes[s].resting_z if o.position.z is None else o.position.z
        for axis, value in (("x", o.position.x), ("y", o.position.y), ("z", z)):
            if abs(value) > MAX_ABS_POSITION_M:
                raise Unprocessable((*loc, i, "position", axis),
                                    f"{axis} = {value} m is farther than {MAX_ABS_POSITION_M} m from the table centre")
        shape[i], color[i], position[i] = s, world.color_index(o.color), [o.position.x, o.position.y, z]
        if o.orientation is not None:
            q = (o.orientation.x, o.orientation.y, o.orientation.z, o.orientation.w)
            norm = math.hypot(*q)
            if not norm > 1e-9 or not math.isfinite(norm):
                raise Unprocessable((*loc, i, "orientation"), f"orientation must be a non-zero, finite quaternion, got {q}")
            quat[i] = [c / norm for c in q]
        elif o.yaw_deg is not None:
            quat[i] = yaw_to_quat(torch.tensor(math.radians(o.yaw_deg % 360.0), dtype=torch.float64)).tolist()
    present = torch.arange(n) < len(objects)
    q = torch.tensor([quat], dtype=torch.float32)
    return SceneBatch(present[None], torch.tensor([shape]), torch.tensor([color]),
                      torch.tensor([position], dtype=torch.float32), quat_to_yaw(q), q)


def detections(scene: SceneBatch, confidence: torch.Tensor, shape_prob: torch.Tensor,
               color_prob: torch.Tensor, boxes: torch.Tensor, world: World,
               min_confidence: Sequence[float], fit: torch.Tensor) -> list[list[DetectedObject]]:
    """Inferred scenes -> per image, its objects in slot order (``inference.api.object_dicts``,
    the in-process API's answer, as schemas)."""
    dicts = object_dicts(scene, confidence, shape_prob, color_prob, boxes, world, min_confidence, fit)
    return [[DetectedObject(**o) for o in objs] for objs in dicts]


@lru_cache(maxsize=64)
def camera(world: World, height: int, width: int) -> CameraInfo:
    """The world's camera for an image of ``height x width`` pixels."""
    return CameraInfo.model_validate(camera_info(world, height, width))


ANSWER_CAMERAS = 256  # distinct cameras whose answer block is kept (most clients send one camera, or none)
_answer_cameras: dict[tuple, CameraInfo] = {}


def answer_camera(cameras) -> CameraInfo:
    """The answer's camera block for the first camera of a ``renderer.pinhole.Cameras`` batch,
    kept by the camera's numbers: a robot sends the same camera (or none) with every frame, and
    describing one costs about a millisecond of the event loop. Call from the event loop only."""
    key = cameras.key()
    info = _answer_cameras.get(key)
    if info is None:
        if len(_answer_cameras) >= ANSWER_CAMERAS:
            _answer_cameras.clear()
        info = _answer_cameras[key] = CameraInfo.model_validate(camera_dict(cameras))
    return info


def objects(result: InferResult, world: World, min_confidence: float) -> list[DetectedObject]:
    """One image's inferred objects (``Engine.infer_batch``) -> the answer's object list."""
    per_image = (result.confidence, result.shape_prob, result.color_prob, result.boxes)
    return detections(result.scene, *(x[None] for x in per_image), world, [min_confidence], result.fit[None])[0]


def render_size(request: RenderRequest, default: int, max_side: int) -> tuple[int, int]:
    """(height, width) of a render request (``RenderRequest.size``: as asked, else the size an
    /infer answer records, fitted to ``max_side``, else ``default`` square)."""
    width, height = request.size(default, max_side)
    return height, width


def model_info(engine: Engine) -> ModelInfo:
    """What GET /v1/model says about the loaded engine."""
    w = engine.world
    e = w.placement_half_extent
    meta = dict(engine.meta)
    metrics = meta.pop("metrics", {}) or {}
    return ModelInfo(
        version=engine.version, weights=engine.weights.name, sha256=engine.sha256, device=str(engine.device),
        max_objects=w.max_objects, image_size=w.image_size,
        shapes=[ShapeInfo(name=s.name, size=Vector3(**dict(zip("xyz", s.size))), resting_z=s.resting_z,
                          yaw_symmetry_deg=s.yaw_symmetry_deg) for s in w.shapes],
        colors=[ColorInfo(name=c.name, rgb=list(c.rgb)) for c in w.colors],
        table_size_m=w.table_size,
        placement_area=PlacementArea(x_min=-e, x_max=e, y_min=-e, y_max=e),
        camera=camera(w, w.image_size, w.image_size),
        camera_envelope=envelope_info(w, engine.predictor.takes_cameras),
        metrics=metrics, card=meta,
    )


def envelope_info(world: World, takes_cameras: bool) -> dict:
    """The supported cameras, as /v1/model states them (only the fixed camera for weights that
    do not take cameras)."""
    if not takes_cameras:
        return {"supported": "the fixed camera only (these weights do not take a camera)"}
    env = asdict(world.envelope)
    env.pop("train_margin")
    return {**env, "azimuth_deg": [0.0, 360.0], "convention": "elevation of the optical axis below the horizon; "
            "distance from the camera to where the optical axis meets the table; look_at_radius: how far that "
            "point may lie from the table centre; fov_deg vertical; aspect = width / height",
            "distortion": {"models": sorted(DISTORTION_MODELS), "max_corner_stretch": MAX_LENS_STRETCH,
                           "max_tangential": MAX_TANGENTIAL,
                           "note": "lens distortion stated as camera_info D is read through; it must be one-to-one "
                                   "out to the image's corners; fisheye (equidistant) lenses are not supported"}}


def look_from(look: LookIn | None, world: World) -> Look | None:
    """A /render look -> the renderer's ``Look`` (None: the world's own, the fast path)."""
    if look is None:
        return None
    base = default_look(world, 1) if look.seed is None else \
        sample_looks(LookPrior(), 1, torch.Generator().manual_seed(look.seed))
    changes: dict = {}
    if look.key_light is not None:
        k = look.key_light
        el, az = math.radians(k.elevation_deg), math.radians(k.azimuth_deg)
        direction = torch.tensor([[[math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]]])
        rgb = kelvin_rgb(torch.tensor([k.kelvin])) * k.intensity
        changes["light_dir"] = torch.cat([direction, base.light_dir[:, 1:]], dim=1)
        changes["light_rgb"] = torch.cat([rgb[:, None], base.light_rgb[:, 1:]], dim=1)
    one = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731
    for name, value in (("specular", look.specular), ("shadow_strength", look.shadow_strength),
                        ("noise_std", look.noise_std), ("gamma", look.gamma), ("saturation", look.saturation),
                        ("glare", look.glare)):
        if value is not None:
            changes[name] = one(value)
    if look.ambient is not None:
        changes["ambient_rgb"] = torch.full((1, 3), look.ambient)
    if look.smooth is not None:
        changes["smooth"] = torch.tensor([look.smooth])
    for name, flag in (("apex_up", look.apex_up), ("welded", look.welded)):
        if flag is not None:
            changes[name] = torch.tensor([flag])
    if look.white_balance is not None:
        changes["white_balance"] = torch.tensor([look.white_balance])
    if look.table_rgb is not None:
        changes["table_rgb"] = torch.tensor([look.table_rgb]).clamp(0, 1)
    if look.background_rgb is not None:
        bg = torch.tensor([look.background_rgb]).clamp(0, 1)
        changes["background_top"], changes["background_bottom"] = bg, bg.clone()
    return replace(base, **changes)


def to_ros(answer: InferResponse, world: World, stamp_ns: int) -> RosInferResponse:
    """The JSON answer shaped as vision_msgs/Detection3DArray (plus the same context fields).

    class_id is ``<color>_<shape>``; score the presence confidence; bbox.size the shape's
    bounding box in its own frame (x length, y width, z height), m.
    """
    header = RosHeader(stamp=RosTime(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                       frame_id=answer.frame_id)
    sizes = {s.name: s.size for s in world.shapes}
    dets = []
    for o in answer.objects:
        pose = RosPose(position=o.position, orientation=o.orientation)
        dets.append(RosDetection3D(
            header=header,
            results=[RosObjectHypothesisWithPose(
                hypothesis=RosObjectHypothesis(class_id=f"{o.color}_{o.shape}", score=o.confidence),
                pose=RosPoseWithCovariance(pose=pose, covariance=[0.0] * 36))],
            bbox=RosBoundingBox3D(center=pose, size=Vector3(**dict(zip("xyz", sizes[o.shape])))),
            id=str(o.id),
        ))
    context = {k: getattr(answer, k) for k in InferContext.model_fields}
    return RosInferResponse(header=header, detections=dets, **context)
