"""The Open Inference Protocol (KServe v2) through a real client of it, tritonclient[http]."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from apiserver import LiveServer, settings_for
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "app" / "static" / "samples"


@pytest.fixture(scope="module")
def server():
    with LiveServer(settings_for(ROOT / "weights" / "air.safetensors")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield c
    c.close()


def _sample(i: int = 0) -> bytes:
    return (SAMPLES / f"sample-{i}.png").read_bytes()


def test_health_and_metadata_through_tritonclient(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("airscene")
    meta = client.get_model_metadata("airscene")
    assert meta["name"] == "airscene" and meta["versions"][0].startswith("air-")
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image": "BYTES", "camera": "BYTES"}
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert outputs["count"] == ("INT32", [-1]) and outputs["position"] == ("FP32", [-1, 3, 3])
    assert meta["parameters"]["shapes"].split(",")[0] == "cube"
    assert not client.is_model_ready("other")


def test_inference_round_trip_matches_the_services_own_answer(client, server):
    images = np.array([_sample(0), _sample(1)], dtype=np.object_)
    given = triton.InferInput("image", [2], "BYTES")
    given.set_data_from_numpy(images, binary_data=True)
    result = client.infer("airscene", [given])  # all outputs, binary
    scenes = [json.loads(s) for s in result.as_numpy("scene")]
    count = result.as_numpy("count")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        own = [http.post("/infer", content=_sample(i), headers={"content-type": "image/png"}).json() for i in (0, 1)]
    assert list(count) == [a["count"] for a in own] == [s["count"] for s in scenes]
    shapes = client.get_model_metadata("airscene")["parameters"]["shapes"].split(",")
    for b in range(2):
        for t, o in enumerate(own[b]["objects"]):
            assert shapes[result.as_numpy("shape")[b, t]] == o["shape"]
            assert np.allclose(result.as_numpy("position")[b, t], [o["position"][k] for k in "xyz"], atol=1e-4)
        assert result.as_numpy("shape")[b, len(own[b]["objects"]):].tolist() == [-1] * (3 - len(own[b]["objects"]))
    assert result.as_numpy("in_world").dtype == np.bool_


def test_json_outputs_pixels_input_and_a_camera(client):
    rgb = np.asarray(Image.open(io.BytesIO(_sample(0))).convert("RGB"))
    given = triton.InferInput("image", list(rgb.shape), "UINT8")
    given.set_data_from_numpy(rgb, binary_data=False)
    asked = [triton.InferRequestedOutput("count", binary_data=False),
             triton.InferRequestedOutput("scene", binary_data=False)]
    result = client.infer("airscene", [given], outputs=asked)
    assert result.as_numpy("count").shape == (1,) and result.get_output("position") is None
    scene = json.loads(result.as_numpy("scene")[0])
    assert scene["image"] == {"width": rgb.shape[1], "height": rgb.shape[0]}


def test_bad_requests_are_protocol_errors_not_500s(client, server):
    bad = triton.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_), binary_data=True)
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer("airscene", [bad])
    assert "image" in str(caught.value)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/v2/models/airscene/infer", content=b"{nope")
        assert r.status_code == 422 and "error" in r.json()
        r = http.post("/v2/models/airscene/infer", json={"inputs": [{"name": "image", "datatype": "BYTES",
                                                                       "shape": [2], "data": ["a"]}]})
        assert r.status_code == 422 and "shape" in r.json()["error"]
        assert http.post("/v2/models/nope/infer", json={"inputs": []}).status_code == 404


@pytest.mark.parametrize("spec,words", [
    ({"datatype": "UINT8", "shape": [0, 0, 3], "data": []}, "at least one pixel"),  # was a 500 (PIL on no pixels)
    ({"datatype": "UINT8", "shape": [-1, -1, 3], "data": [1, 2, 3]}, "integers >= 0"),
    ({"datatype": "UINT8", "shape": [1, 1, 3], "data": [[1, [2]], 3]}, "list of numbers"),
    ({"datatype": "UINT8", "shape": [1, 1, 3], "data": ["a", "b", "c"]}, "list of numbers")])
def test_malformed_pixel_tensors_are_protocol_errors_not_500s(server, spec, words):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/v2/models/airscene/infer", json={"inputs": [{"name": "image", **spec}]})
        assert r.status_code == 422 and words in r.json()["error"], r.text
        ok = {"name": "image", "datatype": "UINT8", "shape": [16, 16, 3], "data": [1e300, -5, 999] * 256}  # clipped, not refused
        assert http.post("/v2/models/airscene/infer", json={"inputs": [ok]}).status_code == 200
        tiny = {**ok, "shape": [1, 1, 3], "data": [1, 2, 3]}  # one pixel cannot show a tabletop
        r = http.post("/v2/models/airscene/infer", json={"inputs": [tiny]})
        assert r.status_code == 422 and "smallest side" in r.json()["error"], r.text
