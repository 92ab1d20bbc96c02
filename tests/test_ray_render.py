"""Datasets rendered across a local Ray cluster: the same files, byte for byte, as the plain command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from renderer.dataset import PhotoData, write_dataset
from renderer.world import World

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a local head with two worker slots
    yield
    ray.shutdown()


def _files(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.suffix == ".npy"}


@pytest.mark.parametrize("photo", [False, True])
def test_ray_renders_the_same_bytes_as_the_plain_command(tmp_path, cluster, photo):
    from renderer.ray_render import ray_chunks

    world = World(image_size=32) if not photo else World(image_size=40)
    data = PhotoData() if photo else None
    plain = write_dataset(tmp_path / "plain", 20, 5, world, chunk=6, progress=False, photo=data)
    on_ray = write_dataset(tmp_path / "ray", 20, 5, world, chunk=6, progress=False, photo=data,
                           chunks=ray_chunks(window=2))
    assert _files(plain) == _files(on_ray)
    assert json.loads((on_ray / "meta.json").read_text())["done"] == 20
    assert np.load(on_ray / "images.npy").any()


def test_a_ray_run_resumes_where_it_stopped(tmp_path, cluster):
    from renderer.ray_render import ray_chunks

    world = World(image_size=32)
    whole = write_dataset(tmp_path / "whole", 18, 2, world, chunk=6, progress=False)
    part = tmp_path / "part"
    write_dataset(part, 18, 2, world, chunk=6, progress=False, chunks=ray_chunks())
    meta = json.loads((part / "meta.json").read_text())
    meta["done"] = 6  # as if stopped after the first chunk
    (part / "meta.json").write_text(json.dumps(meta))
    images = np.load(part / "images.npy", mmap_mode="r+")
    images[6:] = 0
    images.flush()
    write_dataset(part, 18, 2, world, chunk=6, progress=False, chunks=ray_chunks())
    assert _files(whole) == _files(part)
