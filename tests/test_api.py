"""The HTTP API against a live server with untrained dev weights: the contract, bad input,
auth, CORS, metrics and micro-batching. Nothing here depends on the model being any good."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from apiserver import SHIPPED_WEIGHTS, LiveServer, bomb_png, make_dev_weights, settings_for, table_png
from PIL import Image

from app.convert import scene_from_objects
from app.schemas import RenderRequest
from renderer.render import render
from renderer.world import World


@pytest.fixture(scope="module")
def dev_weights(tmp_path_factory):
    return make_dev_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def server(dev_weights):
    with LiveServer(settings_for(dev_weights, max_body_bytes=2_000_000, max_pixels=4_000_000,
                                 max_render_side=512, max_images=4)) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def scene_png(http) -> bytes:
    """A rendered two-object scene, 128x128."""
    r = http.post("/render", json={"objects": [
        {"shape": "cube", "color": "red", "position": {"x": 0.1, "y": -0.1}, "yaw_deg": 20},
        {"shape": "cone", "color": "blue", "position": {"x": -0.1, "y": 0.12}}], "width": 128, "height": 128})
    assert r.status_code == 200
    return r.content


def assert_clean_error(r: httpx.Response, status: int) -> None:
    """The status we want, a JSON {"detail": ...} body, and no traceback."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"detail"} and body["detail"]
    assert "Traceback" not in r.text and 'File "' not in r.text


# ---------------------------------------------------------------- health, model


def test_healthz_and_readyz_answer_ok(http):
    assert http.get("/healthz").json() == {"status": "ok", "detail": None}
    assert http.get("/readyz").json()["status"] == "ready"


def test_readyz_is_503_with_reason_when_weights_fail_to_load(tmp_path):
    with LiveServer(settings_for(tmp_path / "missing.safetensors"), wait_ready=False) as s:
        _wait_for(lambda: s.service.state == "failed")
        r = httpx.get(s.url + "/readyz")
        assert r.status_code == 503 and "does not exist" in r.json()["detail"]
        assert httpx.get(s.url + "/healthz").status_code == 200
        r = httpx.post(s.url + "/infer", content=table_png(), headers={"content-type": "image/png"})
        assert_clean_error(r, 503)
        assert int(r.headers["retry-after"]) >= 1


def test_readyz_names_weights_that_are_not_an_air_network():
    """Under bare uvicorn (``airscene serve`` refuses them before starting), /readyz says why."""
    supervised = SHIPPED_WEIGHTS.with_name("supervised.safetensors")
    with LiveServer(settings_for(supervised), wait_ready=False) as s:
        _wait_for(lambda: s.service.state == "failed")
        r = httpx.get(s.url + "/readyz")
        assert r.status_code == 503 and "is not AIR network weights" in r.json()["detail"]
        assert "KeyError" not in r.json()["detail"]


def test_model_info_lists_shapes_colors_camera_and_n(http):
    info = http.get("/v1/model").json()
    world = World()
    assert [s["name"] for s in info["shapes"]] == list(world.shape_names)
    assert [c["name"] for c in info["colors"]] == list(world.color_names)
    assert info["max_objects"] == world.max_objects and info["image_size"] == 64
    cube = info["shapes"][0]
    assert cube["resting_z"] == pytest.approx(cube["size"]["z"] / 2)
    assert info["placement_area"] == {"x_min": -0.25, "x_max": 0.25, "y_min": -0.25, "y_max": 0.25}
    assert info["camera"]["width"] == 64 and info["camera"]["fx"] > 0
    assert info["card"]["version"] == "dev-untrained"
    assert re.fullmatch(r"[0-9a-f]{64}", info["sha256"]) and info["version"] == "air-" + info["sha256"][:12]


# ---------------------------------------------------------------- /infer


def test_infer_raw_png_answers_the_contract(http, scene_png):
    r = http.post("/infer", content=scene_png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["frame_id"] == "world" and a["units"]["position"] == "m"
    assert a["image"] == {"width": 128, "height": 128}
    assert a["camera"]["width"] == 128 and a["camera"]["cx"] == 64
    assert re.fullmatch(r"air-[0-9a-f]{12}", a["model"]["version"])
    assert set(a["timing_ms"]) == {"decode", "queue", "inference", "refine", "total"}
    assert a["count"] == len(a["objects"]) == 3
    for i, o in enumerate(a["objects"]):
        assert o["id"] == i
        assert set(o) >= {"id", "shape", "color", "confidence", "position", "orientation", "yaw_deg", "bbox"}
        q = o["orientation"]
        assert q["x"] == 0 and q["y"] == 0 and q["z"] ** 2 + q["w"] ** 2 == pytest.approx(1, abs=1e-5)
        assert 0 <= o["bbox"][0] <= o["bbox"][2] <= 128 and 0 <= o["bbox"][1] <= o["bbox"][3] <= 128


def test_infer_multipart_several_images_gives_a_list_in_order(http):
    sizes = [(64, 64), (100, 80), (40, 90)]
    files = [("image", (f"{w}x{h}.png", table_png(w, h), "image/png")) for w, h in sizes]
    r = http.post("/infer", files=files)
    assert r.status_code == 200, r.text
    answers = r.json()
    assert [(a["image"]["width"], a["image"]["height"]) for a in answers] == sizes
    assert [a["camera"]["width"] for a in answers] == [64, 100, 40]


def test_infer_accepts_jpeg_body_and_multipart_single(http):
    buf = io.BytesIO()
    Image.open(io.BytesIO(table_png(96, 96))).save(buf, format="JPEG", quality=90)
    r = http.post("/infer", content=buf.getvalue(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["image"]["width"] == 96
    r = http.post("/infer", files={"image": ("x.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200 and isinstance(r.json(), dict)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "1"])
def test_infer_converts_grey_alpha_palette_and_16_bit(http, mode):
    r = http.post("/infer", content=table_png(64, 64, mode), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text


def test_infer_reads_an_image_upright_as_its_exif_orientation_says(http):
    """A camera that stores its sensor's rows and records how it was held (EXIF orientation 6:
    turn a quarter clockwise) is read as a viewer shows it: the same answer and size as the
    upright image, where the stored pixels alone give another."""
    r = http.post("/render", json={"objects": [
        {"shape": "cube", "color": "red", "position": {"x": 0.1, "y": -0.1}, "yaw_deg": 20}], "width": 160, "height": 120})
    assert r.status_code == 200
    upright = Image.open(io.BytesIO(r.content))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote, 120 x 160
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged, bare = io.BytesIO(), io.BytesIO()
    stored.save(tagged, format="PNG", exif=exif.tobytes())
    stored.save(bare, format="PNG")
    answers = [http.post("/infer", content=body, headers={"content-type": "image/png"}).json()
               for body in (r.content, tagged.getvalue(), bare.getvalue())]
    want, turned, unturned = ((a["image"], a["objects"]) for a in answers)
    assert want[0] == turned[0] == {"width": 160, "height": 120} and unturned[0] == {"width": 120, "height": 160}
    assert turned[1] == want[1]


def test_an_image_with_damaged_exif_is_read_as_stored(http):
    """Metadata a client mangled (here a PNG's EXIF cut inside its header, which Pillow fails on
    with a struct error) never costs the answer: the pixels are read as stored."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(table_png(96, 64))).save(buf, format="PNG", exif=b"Exif\x00\x00MM\x00*")
    r = http.post("/infer", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 96, "height": 64}


def test_a_camera_for_the_stored_pixels_of_a_turned_image_is_refused_saying_why(http):
    stored = Image.new("RGB", (120, 160), (90, 120, 60))  # upright 160 x 120
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif.tobytes())
    bare = io.BytesIO()
    stored.save(bare, format="PNG")
    camera = http.post("/infer", content=bare.getvalue(), headers={"content-type": "image/png"}).json()["camera"]
    assert (camera["width"], camera["height"]) == (120, 160)  # the default camera for the stored pixels
    r = http.post("/infer", files={"image": ("x.png", buf.getvalue(), "image/png"), "camera": (None, json.dumps(camera))})
    assert_clean_error(r, 422)
    assert "EXIF orientation 6" in r.text and "160x120" in r.text


def test_a_reduced_jpeg_decode_keeps_the_upright_full_size():
    from app.images import decode_image
    exif = Image.Exif()
    exif[0x0112] = 8  # a quarter counter-clockwise
    buf = io.BytesIO()
    Image.new("RGB", (640, 320), (90, 120, 60)).save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    image = decode_image(buf.getvalue(), 10**7, draft_side=80)
    assert image.size == (80, 160) and image.info["full_size"] == (320, 640)


def test_infer_converts_cmyk_jpeg(http):
    r = http.post("/infer", content=_jpeg("CMYK"), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text


def test_infer_min_confidence_drops_objects(http, scene_png):
    everything = http.post("/infer", content=scene_png, headers={"content-type": "image/png"}).json()
    none = http.post("/infer?min_confidence=1", content=scene_png, headers={"content-type": "image/png"}).json()
    assert everything["count"] == 3 and none["count"] == 0


def test_infer_format_ros_is_a_detection3d_array(http, scene_png):
    plain = http.post("/infer", content=scene_png, headers={"content-type": "image/png"}).json()
    r = http.post("/infer?format=ros", content=scene_png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["header"]["frame_id"] == "world" and set(a["header"]["stamp"]) == {"sec", "nanosec"}
    assert {"camera", "units", "model", "timing_ms", "frame_id"} <= set(a)
    assert len(a["detections"]) == plain["count"] == 3
    sizes = {s.name: s.size for s in World().shapes}
    for det, obj in zip(a["detections"], plain["objects"]):
        hyp = det["results"][0]
        assert hyp["hypothesis"]["class_id"] == f"{obj['color']}_{obj['shape']}"
        assert 0 <= hyp["hypothesis"]["score"] <= 1
        assert hyp["pose"]["pose"]["position"] == obj["position"]
        assert list(hyp["pose"]["pose"]["orientation"]) == ["x", "y", "z", "w"]
        assert len(hyp["pose"]["covariance"]) == 36
        assert det["bbox"]["center"]["position"] == obj["position"]
        assert tuple(det["bbox"]["size"].values()) == pytest.approx(sizes[obj["shape"]])


def test_infer_answers_keep_their_key_order(http, scene_png):
    context = ["frame_id", "units", "image", "camera", "model", "quality", "refine_steps", "batch_size", "timing_ms"]
    for query, own in (("", ["objects", "count"]), ("?format=ros", ["header", "detections"])):
        r = http.post("/infer" + query, content=scene_png, headers={"content-type": "image/png"})
        assert list(r.json()) == own + context


def test_infer_with_refine_steps_runs_refinement(http, scene_png):
    r = http.post("/infer?refine=2", content=scene_png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["refine_steps"] == 2 and a["count"] == 3
    assert a["timing_ms"]["refine"] > 0


# ---------------------------------------------------------------- /render


def test_render_returns_png_of_the_requested_size(http):
    r = http.post("/render", json={"objects": [{"shape": "wedge", "color": "yellow", "position": {"x": 0, "y": 0}}],
                                   "width": 96, "height": 48})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (96, 48)
    default = http.post("/render", json={"objects": []})
    assert Image.open(io.BytesIO(default.content)).size == (64, 64)


def test_render_draws_what_the_renderer_draws(http):
    scene = {"objects": [{"shape": "box", "color": "green", "position": {"x": 0.05, "y": 0.1},
                          "orientation": {"x": 0, "y": 0, "z": 0.3826834, "w": 0.9238795}},
                         {"shape": "sphere", "color": "purple", "position": {"x": -0.15, "y": -0.1, "z": 0.07}}],
             "width": 80, "height": 80}
    got = np.asarray(Image.open(io.BytesIO(http.post("/render", json=scene).content)))
    world = World()
    batch = scene_from_objects(RenderRequest.model_validate(scene).objects, world)
    with torch.no_grad():
        want = (render(batch, world, "hard", 80, 80)[0] * 255).round().to(torch.uint8).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_render_accepts_the_whole_infer_answer(http, scene_png):
    answer = http.post("/infer", content=scene_png, headers={"content-type": "image/png"}).json()
    r = http.post("/render", json=answer)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    r = http.post("/render", json={"objects": answer["objects"], "width": 128, "height": 128})
    assert r.status_code == 200


def test_render_full_3d_quaternion_is_accepted(http):
    r = http.post("/render", json={"objects": [{"shape": "cube", "color": "cyan", "position": {"x": 0, "y": 0, "z": 0.1},
                                                "orientation": {"x": 0.3, "y": 0.2, "z": 0.1, "w": 0.9}}]})
    assert r.status_code == 200


# ---------------------------------------------------------------- bad input


def _multipart(fields: list[tuple[str, tuple[str, bytes, str]]]) -> tuple[bytes, str]:
    req = httpx.Request("POST", "http://x/infer", files=fields)
    return req.read(), req.headers["content-type"]


OK_OBJ = {"shape": "cube", "color": "red", "position": {"x": 0, "y": 0}}
BAD_INFER = {
    "empty_body": (b"", "image/png", 422, "empty"),
    "not_an_image": (b"hello, world" * 10, "image/png", 422, "not a PNG or JPEG"),
    "truncated_png": (table_png(128, 128)[:300], "image/png", 422, "truncated"),
    "wrong_content_type": (table_png(), "text/plain", 415, "Content-Type"),
    "json_content_type": (b'{"image": 1}', "application/json", 415, "Content-Type"),
    "no_content_type": (table_png(), "", 415, "Content-Type"),
    "decompression_bomb": (bomb_png(), "image/png", 413, "pixels"),
    "more_pixels_than_allowed": (bomb_png(3000, 2000), "image/png", 413, "limit"),
    "one_pixel": (table_png(1, 1), "image/png", 422, "smallest side"),
    "a_sliver": (table_png(3000, 8), "image/png", 422, "smallest side"),
}


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="GIF")
    return buf.getvalue()


def _jpeg(mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(table_png(96, 96))).convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


BAD_INFER["gif_image"] = (_gif(), "image/png", 415, "GIF")
BAD_INFER["jpeg_marker_then_nothing"] = (b"\xff\xd8\xff\xe0" + bytes(100), "image/jpeg", 422, "image header")
BAD_INFER["truncated_jpeg"] = (_jpeg()[:400], "image/jpeg", 422, "truncated")
BAD_INFER["multipart_without_image"] = (*_multipart([("photo", ("a.png", table_png(), "image/png"))]), 422, "'image' is missing")
BAD_INFER["multipart_too_many_images"] = (*_multipart([("image", (f"{i}.png", table_png(), "image/png")) for i in range(5)]),
                                          422, "Maximum number of files")
BAD_INFER["multipart_one_bad_of_two"] = (*_multipart([("image", ("a.png", table_png(), "image/png")),
                                                      ("image", ("b.png", b"junk", "image/png"))]), 422, "not a PNG")


@pytest.mark.parametrize("case", sorted(BAD_INFER))
def test_infer_rejects_bad_input_with_a_clear_4xx(http, case):
    body, ctype, status, words = BAD_INFER[case]
    headers = {"content-type": ctype} if ctype else {}
    r = http.post("/infer", content=body, headers=headers)
    assert_clean_error(r, status)
    assert words.lower() in json.dumps(r.json()).lower()
    assert " at 0x" not in r.text  # no object addresses from the libraries underneath


@pytest.mark.parametrize("query, field", [("refine=-1", "refine"), ("refine=100000", "refine"),
                                          ("min_confidence=2", "min_confidence"), ("format=xml", "format"),
                                          ("refine=abc", "refine")])
def test_infer_rejects_bad_options_naming_them(http, query, field):
    r = http.post(f"/infer?{query}", content=table_png(), headers={"content-type": "image/png"})
    assert_clean_error(r, 422)
    assert r.json()["detail"][0]["loc"] == ["query", field]


BAD_SCENES = {
    "unknown_shape": ({"objects": [dict(OK_OBJ, shape="pyramid")]}, ["body", "objects", 0, "shape"]),
    "unknown_color": ({"objects": [OK_OBJ, dict(OK_OBJ, color="mauve")]}, ["body", "objects", 1, "color"]),
    "too_many_objects": ({"objects": [OK_OBJ] * 4}, ["body", "objects"]),
    "width_zero": ({"objects": [], "width": 0}, ["body", "width"]),
    "height_above_cap": ({"objects": [], "height": 100000}, ["body", "height"]),
    "width_above_limit": ({"objects": [], "width": 513}, ["body", "width"]),
    "zero_quaternion": ({"objects": [dict(OK_OBJ, orientation={"x": 0, "y": 0, "z": 0, "w": 0})]},
                        ["body", "objects", 0, "orientation"]),
    "far_position": ({"objects": [dict(OK_OBJ, position={"x": 1e30, "y": 0})]}, ["body", "objects", 0, "position", "x"]),
    "missing_position": ({"objects": [{"shape": "cube", "color": "red"}]}, ["body", "objects", 0, "position"]),
    "objects_not_a_list": ({"objects": "cube"}, ["body", "objects"]),
    "width_not_integer": ({"objects": [], "width": 12.5}, ["body", "width"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENES))
def test_render_rejects_bad_scenes_naming_the_field(http, case):
    body, loc = BAD_SCENES[case]
    r = http.post("/render", json=body)
    assert_clean_error(r, 422)
    assert r.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize("raw", [b'{"objects": [{"shape": "cube", "color": "red", "position": {"x": NaN, "y": 0}}]}',
                                 b'{"objects": [{"shape": "cube", "color": "red", "position": {"x": 0, "y": Infinity}}]}',
                                 b'{"objects": [{"shape": "cube", "color": "red", "position": {"x": 0, "y": 0}, "yaw_deg": 1e999}]}',
                                 b'{"objects": [', b"not json", b""])
def test_render_rejects_non_finite_numbers_and_broken_json(http, raw):
    r = http.post("/render", content=raw, headers={"content-type": "application/json"})
    assert_clean_error(r, 422)


def test_body_over_the_limit_is_413_before_the_body_is_sent(server):
    """Only the headers go out (Content-Length: 50 MB); the 413 must come back anyway."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 50000000\r\n\r\n")
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "AIRSCENE_MAX_BODY_BYTES" in reply


def test_chunked_body_over_the_limit_is_cut_off_with_413(http):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(100):  # 100 x 64 KiB = 6.4 MB, limit 2 MB
            sent += 65536
            yield b"\0" * 65536

    r = http.post("/infer", content=chunks(), headers={"content-type": "image/png"})
    assert_clean_error(r, 413)


def test_unknown_route_and_method_are_json_404_405(http):
    assert_clean_error(http.get("/nope"), 404)
    assert_clean_error(http.get("/infer"), 405)


# ---------------------------------------------------------------- auth, CORS


def test_api_key_guards_infer_and_render_but_not_health(dev_weights):
    with LiveServer(settings_for(dev_weights, api_key="s3cret", warmup=False)) as s, httpx.Client(base_url=s.url) as c:
        png = table_png()
        r = c.post("/infer", content=png, headers={"content-type": "image/png"})
        assert_clean_error(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        assert_clean_error(c.post("/infer", content=png, headers={"content-type": "image/png",
                                                                  "authorization": "Bearer wrong"}), 401)
        assert_clean_error(c.post("/render", json={"objects": []}), 401)
        assert_clean_error(c.post("/render", content=b"{broken", headers={"content-type": "application/json"}), 401)
        auth = {"authorization": "Bearer s3cret"}
        assert c.post("/infer", content=png, headers={"content-type": "image/png", **auth}).status_code == 200
        assert c.post("/render", json={"objects": []}, headers=auth).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics", "/v1/model", "/", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        schema = c.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert schema["paths"]["/infer"]["post"]["security"] == [{"bearer": []}]
        assert "security" not in schema["paths"]["/healthz"]["get"]


def test_without_api_key_no_auth_is_needed(http):
    assert http.post("/render", json={"objects": []}).status_code == 200


def test_cors_allows_only_configured_origins(dev_weights):
    settings = settings_for(dev_weights, cors_origins="https://robot.example, https://ops.example", warmup=False)
    assert settings.cors_origins == ["https://robot.example", "https://ops.example"]
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        pre = c.options("/infer", headers={"origin": "https://robot.example", "access-control-request-method": "POST",
                                           "access-control-request-headers": "authorization"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://robot.example"
        r = c.get("/healthz", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        refused = c.options("/infer", headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
        assert_clean_error(refused, 400)  # JSON, like every other error
        assert "origin" in refused.json()["detail"]


# ---------------------------------------------------------------- metrics, batching, queue


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_counters_move(http):
    before = http.get("/metrics").text
    http.post("/infer", content=table_png(), headers={"content-type": "image/png"})
    http.post("/infer", content=b"junk", headers={"content-type": "image/png"})
    after = http.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for labels, delta in (({"route": "/infer", "status": "200"}, 1), ({"route": "/infer", "status": "422"}, 1)):
        assert _metric(text, "airscene_http_requests_total", **labels) - \
            _metric(before, "airscene_http_requests_total", **labels) == delta
    for name in ("airscene_http_request_duration_seconds_count", "airscene_infer_batch_size_count",
                 "airscene_infer_queue_seconds_count", "airscene_infer_compute_seconds_count"):
        assert _metric(text, name) > _metric(before, name), name
    assert _metric(text, "airscene_ready") == 1


def test_concurrent_requests_are_batched(dev_weights):
    with LiveServer(settings_for(dev_weights, max_wait_ms=30, max_batch=16)) as s:
        png = table_png()

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
                return await asyncio.gather(*(c.post("/infer", content=png, headers={"content-type": "image/png"})
                                              for _ in range(24)))

        replies = asyncio.run(burst())
        assert all(r.status_code == 200 for r in replies)
        assert max(r.json()["batch_size"] for r in replies) > 1
        text = httpx.get(s.url + "/metrics").text
        batches = _metric(text, "airscene_infer_batch_size_count")
        singles = _metric(text, "airscene_infer_batch_size_bucket", le="1.0")
        assert _metric(text, "airscene_infer_batch_size_sum") > batches - 2  # warm-up batch excluded
        assert singles < batches, "every batch held one image"


def test_full_queue_answers_503_with_retry_after(dev_weights):
    with LiveServer(settings_for(dev_weights, max_queue=1, max_batch=1, max_wait_ms=0, warmup=False)) as s:
        gate = threading.Event()
        s.service._torch.submit(gate.wait)  # occupy the torch thread: nothing can finish
        png = table_png()
        results: list[httpx.Response] = []

        def post() -> None:
            results.append(httpx.post(s.url + "/infer", content=png, headers={"content-type": "image/png"}, timeout=30))

        first = threading.Thread(target=post)  # taken into a batch, waits for the thread
        first.start()
        _wait_for(lambda: s.service.batcher.queued == 0 and _metric(httpx.get(s.url + "/metrics").text,
                                                                     "airscene_infer_batch_size_count") >= 1)
        second = threading.Thread(target=post)  # waits in the queue (max_queue = 1)
        second.start()
        _wait_for(lambda: s.service.batcher.queued == 1)
        r = httpx.post(s.url + "/infer", content=png, headers={"content-type": "image/png"})
        assert_clean_error(r, 503)
        assert int(r.headers["retry-after"]) >= 1
        gate.set()
        first.join(30)
        second.join(30)
        assert [x.status_code for x in results] == [200, 200]
        assert _metric(httpx.get(s.url + "/metrics").text, "airscene_infer_queue_rejections_total") == 1


def _wait_for(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_index_page_and_samples_are_served(http):
    page = http.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert http.get("/static/app.js").status_code == 200
    assert http.get("/docs").status_code == 200
    assert "/infer" in http.get("/openapi.json").json()["paths"]
    samples = http.get("/static/samples/samples.json").json()
    assert len(samples) >= 3
    for s in samples:
        assert http.get("/static/samples/" + s["file"]).headers["content-type"] == "image/png"


def test_a_lone_request_does_not_wait_for_a_batch(dev_weights):
    """max_wait only applies to requests already on their way; one request alone goes at once."""
    with LiveServer(settings_for(dev_weights, max_wait_ms=1000, warmup=False)) as s:
        png = table_png()
        httpx.post(s.url + "/infer", content=png, headers={"content-type": "image/png"})  # first-call costs
        t = time.perf_counter()
        r = httpx.post(s.url + "/infer", content=png, headers={"content-type": "image/png"})
        assert r.status_code == 200 and time.perf_counter() - t < 0.5
        assert r.json()["timing_ms"]["queue"] < 500


# ---------------------------------------------------------------- what a new user meets


def test_model_version_identifies_the_weights_file(http, dev_weights, scene_png):
    digest = hashlib.sha256(dev_weights.read_bytes()).hexdigest()
    info = http.get("/v1/model").json()
    assert info["version"] == "air-" + digest[:12] and info["sha256"] == digest
    answer = http.post("/infer", content=scene_png, headers={"content-type": "image/png"}).json()
    assert answer["model"]["version"] == info["version"]


QUERY_ROUTES = [("POST", "/infer"), ("POST", "/render"), ("GET", "/v1/model"), ("GET", "/v1/limits"),
                ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/"), ("GET", "/docs"),
                ("GET", "/redoc"), ("GET", "/openapi.json"), ("GET", "/favicon.ico")]


@pytest.mark.parametrize("method, path", QUERY_ROUTES)
def test_every_route_rejects_unknown_query_parameters_naming_them(http, method, path):
    r = http.request(method, path, params={"fx": "500", "refine": "0"} if path == "/infer" else {"fx": "500"},
                     content=table_png() if path == "/infer" else b"{}",
                     headers={"content-type": "image/png" if path == "/infer" else "application/json"})
    assert_clean_error(r, 422)
    [error] = r.json()["detail"]
    assert error["loc"] == ["query", "fx"] and "unknown query parameter 'fx'" in error["msg"]


def test_infer_rejects_unknown_query_parameter_and_lists_the_known_ones(http):
    r = http.post("/infer?fx=500&min_confidense=0.5&refine=1", content=table_png(),
                  headers={"content-type": "image/png"})
    assert_clean_error(r, 422)
    assert [e["loc"] for e in r.json()["detail"]] == [["query", "fx"], ["query", "min_confidense"]]
    assert "format, min_confidence, refine" in r.json()["detail"][0]["msg"]
    ok = http.post("/infer?refine=0&min_confidence=0.1&format=json", content=table_png(),
                   headers={"content-type": "image/png"})
    assert ok.status_code == 200
    assert http.get("/static/app.js?v=2").status_code == 200  # static files are left alone


def _local_urls(html: str) -> list[str]:
    """Every URL an HTML page loads (src=, href=, url: '...'), asserting none leaves the server."""
    assert "http://" not in html and "https://" not in html and "//cdn" not in html, html
    urls = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*['"]([^'"]+)['"]""", html)
    return [a or b for a, b in urls]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_assets_the_server_serves(http, page):
    r = http.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _local_urls(r.text)
    assert any(u.endswith(".js") for u in urls) and "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        got = http.get(url)
        assert got.status_code == 200 and len(got.content) > 100, url


def test_demo_page_has_a_favicon(http):
    urls = _local_urls(http.get("/").text)
    assert "/static/favicon.png" in urls
    for path in ("/static/favicon.png", "/favicon.ico"):
        r = http.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size[0] >= 16


def test_limits_report_the_servers_own_settings(http):
    assert http.get("/v1/limits").json() == {"max_refine_steps": 50, "max_images": 4, "max_body_bytes": 2_000_000,
                                              "max_pixels": 4_000_000, "max_request_pixels": 80_000_000,
                                              "max_render_side": 512}


def test_render_of_an_infer_answer_defaults_to_the_image_size_it_records(http):
    answer = http.post("/infer", content=table_png(120, 90), headers={"content-type": "image/png"}).json()
    assert answer["image"] == {"width": 120, "height": 90}
    png = http.post("/render", json=answer).content
    assert Image.open(io.BytesIO(png)).size == (120, 90)
    ros = http.post("/infer?format=ros", content=table_png(120, 90), headers={"content-type": "image/png"}).json()
    assert Image.open(io.BytesIO(http.post("/render", json=ros).content)).size == (120, 90)
    asked = http.post("/render", json={**answer, "width": 40, "height": 30}).content
    assert Image.open(io.BytesIO(asked)).size == (40, 30)  # an explicit size still wins


def test_render_of_a_large_recorded_image_is_scaled_to_the_limit(http):
    r = http.post("/render", json={"objects": [OK_OBJ], "image": {"width": 2000, "height": 1000}})
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == (512, 256)  # max_render_side 512, aspect kept


def test_schema_maxima_equal_the_settings_and_the_world(server, http, dev_weights):
    settings, world = server.settings, World()
    schema = http.get("/openapi.json").json()
    infer = schema["paths"]["/infer"]["post"]
    refine = next(p for p in infer["parameters"] if p["name"] == "refine")
    assert refine["schema"]["maximum"] == settings.max_refine_steps
    form = infer["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["minItems"] == 1 and form["image"]["maxItems"] == settings.max_images
    comps = schema["components"]["schemas"]
    width = next(b for b in comps["RenderRequest"]["properties"]["width"]["anyOf"] if b.get("type") == "integer")
    assert width["maximum"] == settings.max_render_side
    assert comps["RenderRequest"]["properties"]["objects"]["maxItems"] == world.max_objects
    assert comps["SceneObject"]["properties"]["shape"]["enum"] == list(world.shape_names)
    assert comps["SceneObject"]["properties"]["color"]["enum"] == list(world.color_names)
    # and the service refuses just past each
    over = {"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0}}
    assert_clean_error(http.post("/render", json={"objects": [over] * (world.max_objects + 1)}), 422)
    assert_clean_error(http.post("/render", json={"objects": [], "width": settings.max_render_side + 1}), 422)
    assert_clean_error(http.post(f"/infer?refine={settings.max_refine_steps + 1}", content=table_png(),
                                 headers={"content-type": "image/png"}), 422)


def test_a_boolean_is_not_a_number_in_a_body(http):
    obj = {"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0}, "yaw_deg": False}
    r = http.post("/render", json={"objects": [obj]})
    assert_clean_error(r, 422)
    assert r.json()["detail"][0]["loc"][-1] == "yaw_deg"


def test_a_non_ascii_api_key_matches_when_sent_as_utf8(dev_weights):
    key = "clé-ünïcode-密钥"
    with LiveServer(settings_for(dev_weights, api_key=key, warmup=False)) as s, httpx.Client(base_url=s.url) as c:
        body = {"objects": [], "width": 16, "height": 16}
        ok = c.post("/render", json=body, headers={"Authorization": b"Bearer " + key.encode("utf-8")})
        assert ok.status_code == 200, ok.text
        wrong = c.post("/render", json=body, headers={"Authorization": b"Bearer " + "cle".encode("utf-8")})
        assert_clean_error(wrong, 401)


def test_an_oversized_request_head_is_refused_and_the_service_stays_up(http):
    assert_clean_error(http.get("/healthz", headers={"X-Padding": "a" * 40_000}), 431)
    try:
        huge = http.get("/healthz", headers={"X-Padding": "a" * 4_000_000})
    except httpx.HTTPError:  # h11 answered 400 and closed while the head was still being sent
        pass
    else:
        assert huge.status_code in (400, 431)
    assert http.get("/healthz", headers={"X-Padding": "a" * 1000}).status_code == 200


def test_a_render_body_that_is_not_text_is_a_422(http):
    r = http.post("/render", content=b"\xd6\xbb\xff\rW\xfe", headers={"content-type": "application/json"})
    assert_clean_error(r, 422)
    assert r.json()["detail"][0]["loc"] == ["body"]
