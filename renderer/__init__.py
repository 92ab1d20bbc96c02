"""The generative model: world, meshes, scene tensors, batched rendering and the scene prior.

Importing the package routes PyTorch3D's CPU mesh rasterisation through ``renderer.fastraster``
(the same forward pass, a vectorised backward pass about 10-20x faster here)."""

from renderer import fastraster

from renderer.camera import camera_info, object_bboxes, project
from renderer.prior import sample_scenes
from renderer.render import MODES, RasterSettings, SceneRenderer, instance_map, make_renderer, render
from renderer.scene import SceneBatch, empty_scenes, quat_to_yaw, yaw_to_quat
from renderer.world import World

fastraster.install()

__all__ = [
    "MODES", "RasterSettings", "SceneBatch", "SceneRenderer", "World", "camera_info", "empty_scenes",
    "instance_map", "make_renderer", "object_bboxes", "project", "quat_to_yaw", "render",
    "sample_scenes", "yaw_to_quat",
]
