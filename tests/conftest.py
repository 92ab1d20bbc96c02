"""Shared fixtures: the default world, a small scene builder and a batch of prior scenes."""

from __future__ import annotations

import pytest
import torch

from renderer.dataset import render_images
from renderer.prior import sample_scenes
from renderer.scene import SceneBatch
from renderer.world import World


@pytest.fixture(scope="session")
def world() -> World:
    return World()


@pytest.fixture(scope="session")
def make_scene(world: World):
    """Build a one-scene batch from ``(shape name, colour name, x, y, yaw)`` tuples.

    Objects rest on the table (z = the shape's resting height); slots are filled in order.
    Returns SceneBatch with B = 1, N = len(objects).
    """

    def build(*objects: tuple[str, str, float, float, float]) -> SceneBatch:
        n = len(objects)
        shape = [world.shape_index(o[0]) for o in objects]
        return SceneBatch(
            present=torch.ones(1, n, dtype=torch.bool),
            shape=torch.tensor([shape], dtype=torch.int64).reshape(1, n),
            color=torch.tensor([[world.color_index(o[1]) for o in objects]], dtype=torch.int64).reshape(1, n),
            position=torch.tensor([[[o[2], o[3], world.shapes[s].resting_z] for o, s in zip(objects, shape)]],
                                  dtype=torch.float32).reshape(1, n, 3),
            yaw=torch.tensor([[o[4] for o in objects]], dtype=torch.float32).reshape(1, n),
        )

    return build


@pytest.fixture(scope="session")
def batch(world: World) -> tuple[torch.Tensor, SceneBatch]:
    """Eight prior scenes (seed 3) and their images as the datasets render them:
    (8, 3, S, S) float in [0, 1]."""
    scene = sample_scenes(world, 8, seed=3)
    return render_images(scene, world).permute(0, 3, 1, 2).float() / 255.0, scene
