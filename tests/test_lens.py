"""Lens distortion (camera_info D): the model, its inverse, projection and rays through it, the
warp to the network's view, /render drawing through it, and what the API refuses."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import httpx
import pytest
import torch
from apiserver import LiveServer, make_dev_weights, settings_for, table_png

from app.camera import CameraIn, to_cameras
from inference.views import warp_to_view
from renderer.appearance import default_look
from renderer.camera import camera_dict
from renderer.photo import render_photo
from renderer.pinhole import distort, lens_stretch, look_at_cameras, undistort
from renderer.prior import sample_scenes
from renderer.world import World

WORLD = World()
BARREL = torch.tensor([[-0.25, 0.06, 0.0008, -0.0005, 0.0, 0.0, 0.0, 0.0]])


def camera(height: int = 240, width: int = 320, lens: torch.Tensor | None = BARREL):
    eye = torch.tensor([[-0.7, 0.25, 0.85]])
    return replace(look_at_cameras(eye, torch.zeros(1, 3), torch.tensor([58.0]), height, width), distortion=lens)


def test_undistort_inverts_distort_and_plumb_bob_moves_points_as_written():
    xy = torch.rand(1, 500, 2, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.7
    assert torch.allclose(undistort(distort(xy, BARREL), BARREL), xy, atol=1e-5)
    x, y = 0.5, -0.2
    r2 = x * x + y * y
    radial = 1 - 0.25 * r2 + 0.06 * r2 * r2
    want = (x * radial + 2 * 0.0008 * x * y - 0.0005 * (r2 + 2 * x * x), y * radial + 0.0008 * (r2 + 2 * y * y) - 2 * 0.0005 * x * y)
    assert distort(torch.tensor([[[x, y]]]), BARREL)[0, 0].tolist() == pytest.approx(want, abs=1e-6)


def test_lens_stretch_is_one_without_distortion_and_nan_where_the_lens_folds():
    none, folds = torch.zeros(1, 8), torch.tensor([[-0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert float(lens_stretch(none, torch.tensor([0.8]))[0]) == pytest.approx(1.0, abs=0.01)
    assert float(lens_stretch(BARREL, torch.tensor([0.8]))[0]) > 1.1  # barrel: corners pulled in
    assert math.isnan(float(lens_stretch(folds, torch.tensor([1.0]))[0]))  # r (1 - 0.6 r^2) peaks at 0.52 < 1


def test_projection_and_rays_go_through_the_lens():
    cams = camera()
    points = torch.tensor([[[0.35, -0.35, 0.0], [-0.35, 0.35, 0.0], [0.1, 0.1, 0.1]]])  # table corners: far out
    uv, _ = cams.project(points)
    ideal_uv, _ = cams.ideal().project(points)
    assert float((uv - ideal_uv).norm(dim=-1).max()) > 1.0  # the lens moves them by pixels
    back = cams.lift(uv, points[..., 2])  # each pixel's ray meets its point's height at the point
    assert torch.allclose(back, points, atol=1e-4)


def test_a_distorted_image_warps_to_the_view_the_ideal_one_gives():
    scene = sample_scenes(WORLD, 1, seed=5, counts=[3])
    look = default_look(WORLD, 1)
    seen = {}
    for name, cams in (("ideal", camera(lens=None)), ("lens", camera())):
        image = render_photo(scene, WORLD, cams, look, torch.Generator().manual_seed(0))[0].permute(2, 0, 1)
        seen[name] = (image, warp_to_view(image, cams, WORLD).pixels[0])
    ideal_view, lens_view = seen["ideal"][1], seen["lens"][1]
    as_if_ideal = warp_to_view(seen["lens"][0], camera(lens=None), WORLD).pixels[0]  # the lens ignored
    moved = lambda a, b: float(((a - b).abs().amax(0) > 0.1).float().mean())  # noqa: E731  (share of pixels)
    assert moved(seen["lens"][0], seen["ideal"][0]) > 0.01  # the lens moved edges in the image
    assert moved(lens_view, ideal_view) < 0.002  # read through it, the view is the ideal lens's
    assert moved(as_if_ideal, ideal_view) > 0.02  # read as if there were none, it is not


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    weights = make_dev_weights(tmp_path_factory.mktemp("lens-weights"), views=True)
    with LiveServer(settings_for(weights)) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        yield client


def lens_camera(**changes) -> dict:
    d = camera_dict(camera(120, 160, None))
    return {**{k: d[k] for k in ("position", "orientation", "fx", "fy", "cx", "cy", "width", "height")},
            "D": [-0.25, 0.06, 0.0008, -0.0005, 0.0], **changes}


def test_infer_reads_through_a_stated_lens_and_echoes_it(http):
    r = http.post("/infer", content=table_png(160, 120), headers={"content-type": "image/png"},
                  params={"camera": json.dumps(lens_camera())})
    assert r.status_code == 200, r.text
    got = r.json()["camera"]
    assert got["distortion_model"] == "plumb_bob" and got["D"] == pytest.approx([-0.25, 0.06, 0.0008, -0.0005, 0.0])
    assert CameraIn.model_validate(got).D == pytest.approx(got["D"])  # the answer's camera is valid input again
    zero = http.post("/infer", content=table_png(160, 120), headers={"content-type": "image/png"},
                     params={"camera": json.dumps(lens_camera(D=[0.0] * 5))})
    assert zero.status_code == 200 and zero.json()["camera"].get("D") is None  # all zeros: an ideal lens


@pytest.mark.parametrize("changes,words", [
    ({"D": [-2.0, 0.0, 0.0, 0.0, 0.0]}, "not one-to-one"),
    ({"D": [5.0, 0.0, 0.0, 0.0, 0.0]}, "factor"),
    ({"D": [0.1, 0.0, 0.0]}, "terms"),
    ({"D": [0.1, 0.0, 0.0, 0.0, 0.0], "distortion_model": "equidistant"}, "not supported"),
    ({"D": [0.1, 0.0, 0.5, 0.0, 0.0]}, "tangential"),
    ({"D": [1e300, 0.0, 0.0, 0.0, 0.0]}, "less than or equal"),
])
def test_infer_and_render_refuse_a_lens_they_cannot_undo(http, changes, words):
    cam = json.dumps(lens_camera(**changes))
    r = http.post("/infer", content=table_png(160, 120), headers={"content-type": "image/png"}, params={"camera": cam})
    assert r.status_code == 422 and words in r.text, r.text
    scene = {"objects": [{"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0}}], "camera": json.loads(cam)}
    r = http.post("/render", json=scene)
    assert r.status_code == 422 and words in r.text, r.text


def test_render_draws_through_the_lens(http):
    scene = {"objects": [{"shape": "cube", "color": "red", "position": {"x": 0.1, "y": 0.1}}]}
    plain = http.post("/render", json={**scene, "camera": lens_camera(D=[0.0] * 5)})
    bent = http.post("/render", json={**scene, "camera": lens_camera()})
    assert plain.status_code == bent.status_code == 200 and plain.content != bent.content
    cams = to_cameras(CameraIn.model_validate(lens_camera()), 120, 160)
    assert cams.distortion is not None and cams.distortion.shape == (1, 8)
