"""Hostile and broken clients: answers stay bounded JSON and never count as server errors."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from PIL import Image
from apiserver import LiveServer, make_dev_weights, settings_for
from starlette.requests import Request

from app.deps import read_images
from app.errors import ClientGone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(settings_for(make_dev_weights(tmp_path_factory.mktemp("w")))) as s:
        yield s


def test_client_that_hangs_up_mid_upload_is_a_499_not_a_500(tmp_path):
    async def receive():
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/infer", "query_string": b"",
             "headers": [(b"content-type", b"image/png"), (b"content-length", b"1000")]}
    with pytest.raises(ClientGone) as caught:
        asyncio.run(read_images(Request(scope, receive), settings_for(tmp_path / "none.safetensors")))
    assert caught.value.status_code == 499


def test_metrics_method_label_stays_bounded_under_unusual_methods(server):
    unusual = ("PROPFIND", "MKCOL", "LOCK", "SEARCH", "PURGE", "REPORT")  # parsed by the HTTP stack, served by no route
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method in unusual:
            http.request(method, "/healthz")
        text = http.get("/metrics").text
    assert not any(f'method="{m}"' in text for m in unusual)
    assert 'method="other"' in text


def test_error_body_does_not_echo_a_huge_field(server):
    scene = {"objects": [{"shape": "x" * 200_000, "color": "red", "position": {"x": 0, "y": 0}}]}
    r = httpx.post(server.url + "/render", json=scene, timeout=30)
    assert r.status_code == 422 and len(r.content) < 2000


def test_readyz_names_no_absolute_path_when_the_weights_are_missing(tmp_path):
    with LiveServer(settings_for(tmp_path / "deep" / "missing.safetensors"), wait_ready=False) as s:
        for _ in range(100):
            r = httpx.get(s.url + "/readyz", timeout=10)
            if r.json()["status"] == "failed":
                break
            asyncio.run(asyncio.sleep(0.05))
    assert r.status_code == 503 and r.json()["status"] == "failed"
    assert str(tmp_path) not in r.text and "missing.safetensors" in r.text


def test_a_request_has_a_pixel_budget_across_its_images(tmp_path):
    weights = make_dev_weights(tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (300, 200), (120, 120, 120)).save(png, format="PNG")
    files = [("image", (f"{i}.png", png.getvalue(), "image/png")) for i in range(3)]
    with LiveServer(settings_for(weights, max_pixels=100_000, max_request_pixels=150_000, warmup=False)) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.post("/infer", files=files[:2]).status_code == 200  # 120 000 pixels
        r = c.post("/infer", files=files)  # 180 000 pixels: each image alone would pass
        assert r.status_code == 413 and "budget" in r.json()["detail"]
        assert c.get("/v1/limits").json()["max_request_pixels"] == 150_000


def test_a_large_16_bit_png_is_read_without_float_copies():
    import numpy as np

    from inference.preprocess import to_rgb

    a = (np.arange(512 * 512, dtype=np.uint32).reshape(512, 512) * 97 % 65536).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        grey = np.asarray(to_rgb(im))[..., 0].astype(int)
    assert np.abs(grey - np.round(a / 65535 * 255 - 0.5).clip(0)).max() <= 1  # the high byte, as the float path
