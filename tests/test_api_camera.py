"""The user's camera at the API: stated per request (query or multipart) or per deployment,
checked against the envelope, used whole-image, echoed in the answer; /render from a camera
and under a look; /v1/model states the envelope. Untrained view weights (the answers mean
nothing; what is checked is how cameras are taken, refused and used)."""

from __future__ import annotations

import io
import json
import math

import httpx
import numpy as np
import pytest
import torch
from apiserver import LiveServer, make_dev_weights, settings_for, table_png
from PIL import Image

from app.camera import CameraIn, to_cameras
from inference.api import Predictor
from renderer.camera import camera_info
from renderer.world import World

WORLD = World()


def look_at_camera(azimuth_deg: float, elevation_deg: float, distance: float, fov_deg: float = 50.0,
                   width: int = 160, height: int = 120) -> dict:
    """A camera dict (the /infer schema) looking at the table centre, level."""
    from renderer.pinhole import look_at_cameras

    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = torch.tensor([[distance * math.cos(el) * math.cos(az), distance * math.cos(el) * math.sin(az),
                         distance * math.sin(el)]])
    cams = look_at_cameras(eye, torch.zeros(1, 3), torch.tensor([fov_deg]), height, width)
    from renderer.camera import camera_dict

    d = camera_dict(cams)
    return {"position": d["position"], "orientation": d["orientation"], "fx": d["fx"], "fy": d["fy"],
            "cx": d["cx"], "cy": d["cy"], "width": width, "height": height}


@pytest.fixture(scope="module")
def view_weights(tmp_path_factory):
    return make_dev_weights(tmp_path_factory.mktemp("view-weights"), views=True)


@pytest.fixture(scope="module")
def http(view_weights, tmp_path_factory):
    with LiveServer(settings_for(view_weights)) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        yield client


def infer(http, png: bytes, camera: dict | None = None, **params):
    if camera is not None:
        params["camera"] = json.dumps(camera)
    return http.post("/infer", content=png, headers={"content-type": "image/png"}, params=params)


def test_infer_takes_a_camera_and_states_it_in_the_answer(http):
    cam = look_at_camera(30, 55, 1.2)
    r = infer(http, table_png(160, 120), cam)
    assert r.status_code == 200, r.text
    got = r.json()["camera"]
    assert got["fx"] == pytest.approx(cam["fx"], rel=1e-4) and got["width"] == 160
    assert got["elevation_deg"] == pytest.approx(55, abs=0.01) and got["distance_m"] == pytest.approx(1.2, abs=1e-4)


@pytest.mark.parametrize("elevation,distance,fov,field", [
    (15, 1.1, 50, "elevation_deg"), (60, 2.5, 50, "distance"), (60, 1.1, 100, "fov_deg")])
def test_infer_refuses_a_camera_outside_the_envelope_naming_the_field(http, elevation, distance, fov, field):
    r = infer(http, table_png(160, 120), look_at_camera(0, elevation, distance, fov))
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["query", "camera"] and field in detail["msg"] and "range" in detail["msg"]


@pytest.mark.parametrize("change,words", [
    ({"orientation": {"x": 1e300, "y": 0.0, "z": 0.0, "w": 1.0}}, "elevation_deg"),  # a huge but usable quaternion
    ({"cx": 1e300}, "too large"), ({"fx": 1e39, "fy": 1e39}, "too large"),  # finite in JSON, not as 32-bit floats
    ({"position": {"x": 0.0, "y": 1e39, "z": 1.0}}, "too large"),
    ({"cx": 1e9}, "principal point"), ({"cy": -5.0}, "principal point")])
def test_infer_refuses_extreme_camera_numbers_with_a_422_never_a_500(http, change, words):
    r = infer(http, table_png(160, 120), {**look_at_camera(0, 60, 1.1), **change})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["query", "camera"] and words in detail["msg"]
    assert infer(http, table_png(160, 120), look_at_camera(0, 60, 1.1)).status_code == 200  # and it still answers


@pytest.mark.parametrize("field,literal", [("fx", "NaN"), ("cy", "-Infinity"), ("position.z", "Infinity"),
                                           ("orientation.w", "NaN")])
def test_a_camera_with_nan_or_infinity_is_refused_naming_the_field(http, field, literal):
    """Python's JSON reader takes NaN and Infinity; a camera holding one is a 422 that names the
    number, on /infer's query and /render's body alike, and the service goes on answering."""
    cam = look_at_camera(0, 60, 1.1)
    *parents, leaf = field.split(".")
    where = cam
    for key in parents:
        where = where[key]
    where[leaf] = "@"
    text = json.dumps(cam).replace('"@"', literal)
    r = http.post("/infer", content=table_png(160, 120), headers={"content-type": "image/png"}, params={"camera": text})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "camera", *field.split(".")]
    body = '{"objects": [{"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0}}], "camera": ' + text + "}"
    r = http.post("/render", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "camera", *field.split(".")]
    assert infer(http, table_png(160, 120), look_at_camera(0, 60, 1.1)).status_code == 200


def test_render_refuses_camera_numbers_too_large_to_compute_with(http):
    scene = {"objects": [{"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0}}],
             "camera": {**look_at_camera(0, 60, 1.1), "fx": 1e39, "fy": 1e39}}
    r = http.post("/render", json=scene)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "camera"], r.text
    assert "too large" in r.json()["detail"][0]["msg"]


def test_infer_refuses_a_misspelt_camera_field(http):
    cam = {**look_at_camera(0, 60, 1.1), "fov": 45}
    r = infer(http, table_png(160, 120), cam)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "camera", "fov"]


def test_infer_refuses_a_camera_without_intrinsics(http):
    cam = look_at_camera(0, 60, 1.1)
    for key in ("fx", "fy", "cx", "cy"):
        cam.pop(key)
    r = infer(http, table_png(160, 120), cam)
    assert r.status_code == 422 and "intrinsics" in r.json()["detail"][0]["msg"]


def test_infer_refuses_intrinsics_for_another_aspect(http):
    r = infer(http, table_png(160, 160), look_at_camera(0, 60, 1.1, width=160, height=120))
    assert r.status_code == 422 and "aspect" in r.json()["detail"][0]["msg"]


def test_camera_info_k_matrix_and_field_of_view_give_the_same_answer(http):
    png = table_png(160, 120)
    cam = look_at_camera(200, 65, 1.0, fov_deg=48.0)
    as_k = {k: cam[k] for k in ("position", "orientation", "width", "height")}
    as_k["K"] = [cam["fx"], 0.0, cam["cx"], 0.0, cam["fy"], cam["cy"], 0.0, 0.0, 1.0]
    as_fov = {k: cam[k] for k in ("position", "orientation")} | {"fov_deg": 48.0}
    a, b = infer(http, png, as_k).json(), infer(http, png, as_fov).json()
    assert a["count"] == b["count"] > 0
    for x, y in zip(a["objects"], b["objects"]):
        assert x["shape"] == y["shape"]
        assert x["position"]["x"] == pytest.approx(y["position"]["x"], abs=1e-3)
        assert x["position"]["y"] == pytest.approx(y["position"]["y"], abs=1e-3)


def test_body_frame_orientation_is_the_optical_one_turned():
    cam = look_at_camera(120, 50, 1.3)
    optical = to_cameras(CameraIn(**cam), 120, 160)
    # the same camera stated by its body frame (x forward, y left, z up): R_body = R_optical @ B^T
    r = optical.rotation[0].double()
    body_from_optical = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    rb = r @ body_from_optical.T
    from renderer.camera import matrix_to_quat

    body = {**cam, "orientation": dict(zip("xyzw", matrix_to_quat(rb))), "convention": "body"}
    again = to_cameras(CameraIn(**body), 120, 160)
    assert torch.allclose(again.rotation, optical.rotation, atol=1e-5)


def test_answers_camera_is_valid_camera_input_again():
    info = camera_info(WORLD, 480, 640)
    cams = to_cameras(CameraIn(**info), 480, 640)
    assert float(cams.focal[0, 0]) == pytest.approx(info["fx"], rel=1e-5)


def test_intrinsics_scale_with_the_image_sent():
    cam = look_at_camera(0, 60, 1.1, width=640, height=480)
    small = to_cameras(CameraIn(**cam), 240, 320)
    assert float(small.focal[0, 0]) == pytest.approx(cam["fx"] / 2, rel=1e-5)
    assert float(small.principal[0, 1]) == pytest.approx(cam["cy"] / 2, rel=1e-5)


def test_multipart_takes_one_camera_per_image(http):
    pngs = [table_png(160, 120), table_png(160, 120)]
    cams = [look_at_camera(0, 60, 1.1), look_at_camera(90, 70, 1.3)]
    files = [("image", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)]
    data = {"camera": [json.dumps(c) for c in cams]}
    r = http.post("/infer", files=files, data=data)
    assert r.status_code == 200, r.text
    got = [a["camera"]["elevation_deg"] for a in r.json()]
    assert got == [pytest.approx(60, abs=0.01), pytest.approx(70, abs=0.01)]


def test_multipart_refuses_a_camera_count_that_fits_no_image_count(http):
    files = [("image", (f"{i}.png", table_png(160, 120), "image/png")) for i in range(3)]
    data = {"camera": [json.dumps(look_at_camera(0, 60, 1.1))] * 2}
    r = http.post("/infer", files=files, data=data)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "camera"]


def test_non_square_image_is_used_whole(view_weights):
    """A 16:9 camera looking 10 cm beside the table centre: the table reaches past the centre
    square, and what the image shows there reaches the network (a centre crop would drop it)."""
    from renderer.pinhole import look_at_cameras, source_pixels
    from inference.views import view_cameras

    predictor = Predictor.load(view_weights)
    height, width = 90, 160
    cams = look_at_cameras(torch.tensor([[-0.45, 0.0, 0.72]]), torch.tensor([[0.0, 0.1, 0.0]]),
                           torch.tensor([40.0]), height, width)
    seen = source_pixels(cams, view_cameras(cams, predictor.world))[..., 0]
    left = int(seen.min().ceil())
    crop_left = (width - height) // 2
    assert left < crop_left - 4  # the view reaches beyond the centre square
    base = np.full((height, width, 3), 128, np.uint8)
    painted = base.copy()
    painted[:, left: crop_left - 2] = (255, 0, 0)
    a = predictor.prepare(Image.fromarray(base), cams)
    b = predictor.prepare(Image.fromarray(painted), cams)
    assert not torch.equal(a.pixels, b.pixels)
    answer = predictor.infer(painted, camera=cams)
    assert answer["image"] == {"width": width, "height": height} and answer["camera"]["width"] == width


def test_v1_model_states_the_camera_envelope(http):
    env = http.get("/v1/model").json()["camera_envelope"]
    assert env["elevation_deg"][0] <= 35 and env["elevation_deg"][1] >= 80
    assert env["distance"][0] <= 0.8 and env["distance"][1] >= 1.5
    assert env["fov_deg"][0] <= 35 and env["fov_deg"][1] >= 65
    assert env["distortion"]["models"] == ["plumb_bob", "rational_polynomial"]


def test_render_from_a_camera_under_a_look_has_the_cameras_size(http):
    cam = look_at_camera(45, 50, 1.2, width=200, height=150)
    scene = {"objects": [{"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0}}],
             "camera": cam, "look": {"seed": 3, "smooth": True}}
    r = http.post("/render", json=scene)
    assert r.status_code == 200, r.text
    img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert img.shape == (150, 200, 3)
    plain = np.asarray(Image.open(io.BytesIO(http.post("/render", json={**scene, "look": None}).content)).convert("RGB"))
    assert np.abs(img.astype(int) - plain.astype(int)).mean() > 3  # the look changed the picture


def test_deployment_camera_is_the_default(view_weights, tmp_path):
    cam = look_at_camera(270, 45, 1.4, width=160, height=120)
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(cam))
    with LiveServer(settings_for(view_weights, camera=path)) as s:
        answer = httpx.post(s.url + "/infer", content=table_png(160, 120), headers={"content-type": "image/png"},
                            timeout=60).json()
    assert answer["camera"]["elevation_deg"] == pytest.approx(45, abs=0.01)


def test_fixed_camera_weights_refuse_a_camera(tmp_path_factory):
    weights = make_dev_weights(tmp_path_factory.mktemp("fixed"))
    with LiveServer(settings_for(weights)) as s:
        r = httpx.post(s.url + "/infer", content=table_png(160, 120), headers={"content-type": "image/png"},
                       params={"camera": json.dumps(look_at_camera(0, 60, 1.1))}, timeout=60)
    assert r.status_code == 422 and "fixed camera" in r.json()["detail"][0]["msg"]


def test_cli_passes_a_camera_file(view_weights, tmp_path, capsys):
    from app.cli import main

    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps(look_at_camera(150, 40, 1.0)))
    img = tmp_path / "frame.png"
    img.write_bytes(table_png(160, 120))
    assert main(["infer", str(img), "--camera", str(cam), "--weights", str(view_weights)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["camera"]["elevation_deg"] == pytest.approx(40, abs=0.01)


def test_cli_names_a_camera_file_that_is_not_json(view_weights, tmp_path, capsys):
    from app.cli import main

    cam = tmp_path / "cam.json"
    cam.write_text("fx: 500")
    img = tmp_path / "frame.png"
    img.write_bytes(table_png(160, 120))
    assert main(["infer", str(img), "--camera", str(cam), "--weights", str(view_weights)]) == 1
    err = capsys.readouterr().err
    assert "cam.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_client_sends_a_camera(http):
    from app.client import Client

    with Client(str(http.base_url)) as client:
        answer = client.infer(np.full((120, 160, 3), 90, np.uint8), camera=look_at_camera(300, 75, 1.5))
    assert answer["camera"]["elevation_deg"] == pytest.approx(75, abs=0.01)


def test_the_answers_camera_block_is_kept_per_camera_and_never_mixed_up():
    """``app.convert.answer_camera`` keeps each camera's block by its numbers: the same camera
    gives the same block as describing it afresh, and cameras that differ in one number, or only
    in image size, get their own."""
    from app import convert
    from app.schemas import CameraInfo
    from renderer.camera import camera_dict
    from renderer.pinhole import look_at_cameras

    def cams(x: float, fov: float, height: int = 120, width: int = 160):
        return look_at_cameras(torch.tensor([[x, 0.1, 0.9]]), torch.zeros(1, 3), torch.tensor([fov]), height, width)

    variants = [cams(0.8, 50.0), cams(0.8, 50.0001), cams(0.81, 50.0), cams(0.8, 50.0, 240, 320)]
    convert._answer_cameras.clear()
    for _ in range(2):  # the second round is answered from what the first kept
        for c in variants:
            assert convert.answer_camera(c) == CameraInfo.model_validate(camera_dict(c))
    assert len(convert._answer_cameras) == len(variants)
    for i in range(convert.ANSWER_CAMERAS + 1):  # bounded: it empties itself rather than grow
        convert.answer_camera(cams(0.5 + i * 1e-3, 50.0))
    assert len(convert._answer_cameras) <= convert.ANSWER_CAMERAS


def test_render_takes_the_cameras_colour_rendering(http):
    scene = {"objects": [{"shape": "cube", "color": "green", "position": {"x": 0.0, "y": 0.0}}], "width": 64}
    png = lambda look: np.asarray(Image.open(io.BytesIO(http.post("/render", json={**scene, "look": look}).content)).convert("RGB")).astype(float)  # noqa: E731
    plain, warm = png({}), png({"white_balance": [1.3, 1.0, 0.7]})
    assert (warm[..., 0] - plain[..., 0]).mean() > 5 and (warm[..., 2] - plain[..., 2]).mean() < -5
    grey = png({"saturation": 0.0})
    assert np.abs(grey - grey.mean(-1, keepdims=True)).max() <= 1  # every pixel its own grey (8-bit rounding)
    assert png({"glare": 0.2}).min() >= 0.2 * 255 - 1
    for bad in ({"white_balance": [1.0, 1.0, 9.0]}, {"white_balance": [1.0, 1.0]}, {"saturation": -1}, {"glare": 0.9}):
        r = http.post("/render", json={**scene, "look": bad})
        assert r.status_code == 422, bad


@pytest.mark.parametrize("shape, flag", [("cone", "apex_up"), ("cube", "welded")])
def test_render_shades_mesh_normals_as_asked(http, shape, flag):
    scene = {"objects": [{"shape": shape, "color": "red", "position": {"x": 0.0, "y": 0.0}}], "width": 64}
    png = lambda look: np.asarray(Image.open(io.BytesIO(http.post("/render", json={**scene, "look": look}).content)).convert("RGB")).astype(float)  # noqa: E731
    smooth, averaged = png({"smooth": True}), png({"smooth": True, flag: True})
    assert np.abs(averaged - smooth).max() > 10  # the shading changed
    assert np.array_equal(png({"smooth": False, flag: True}), png({"smooth": False}))  # flat faces: no vertex normals
    assert http.post("/render", json={**scene, "look": {flag: "sometimes"}}).status_code == 422
