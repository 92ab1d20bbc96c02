"""The one converter between the API's pydantic models and the tensors of ``renderer``/``inference``.

Requests -> ``SceneBatch`` (``scene_from_objects``), inference tensors -> ``DetectedObject``
lists (``detections``), and the JSON answer -> its vision_msgs shape (``to_ros``). Scene errors
are raised as 422s whose ``loc`` names the field, e.g. ``["body", "objects", 2, "shape"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from app.errors import Unprocessable
from app.schemas import (
    CameraInfo,
    DetectedObject,
    InferResponse,
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
    Vector3,
)
from inference.api import object_dicts
from renderer.camera import camera_info
from renderer.scene import SceneBatch
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
            raise Unprocessable((*loc, i, "shape"), f"unknown shape {o.shape!r}; known: {list(world.shape_names)}")
        if o.color not in world.color_names:
            raise Unprocessable((*loc, i, "color"), f"unknown color {o.color!r}; known: {list(world.color_names)}")
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
            half = math.radians(o.yaw_deg % 360.0) / 2
            quat[i] = [0.0, 0.0, math.sin(half), math.cos(half)]
    present = torch.arange(n) < len(objects)
    q = torch.tensor([quat], dtype=torch.float32)
    x, y, zq, w = q.unbind(-1)
    yaw = torch.atan2(2 * (w * zq + x * y), 1 - 2 * (y * y + zq * zq))
    return SceneBatch(present[None], torch.tensor([shape]), torch.tensor([color]),
                      torch.tensor([position], dtype=torch.float32), yaw, q)


def detections(scene: SceneBatch, confidence: torch.Tensor, shape_prob: torch.Tensor,
               color_prob: torch.Tensor, boxes: torch.Tensor, world: World,
               min_confidence: Sequence[float]) -> list[list[DetectedObject]]:
    """Inferred scenes -> per image, its objects in slot order (``inference.api.object_dicts``,
    the in-process API's answer, as schemas)."""
    dicts = object_dicts(scene, confidence, shape_prob, color_prob, boxes, world, min_confidence)
    return [[DetectedObject(**o) for o in objs] for objs in dicts]


def camera(world: World, height: int, width: int) -> CameraInfo:
    """The world's camera for an image of ``height x width`` pixels."""
    return CameraInfo.model_validate(camera_info(world, height, width))


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
    context = answer.model_dump(exclude={"objects", "count"})
    return RosInferResponse(header=header, detections=dets, **context)
