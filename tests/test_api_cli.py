"""The ``airscene`` command and the Python client, against dev weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from apiserver import LiveServer, make_dev_weights, settings_for, table_png
from PIL import Image

from app.cli import main
from app.client import Client, ClientError


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_dev_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def server(weights):
    with LiveServer(settings_for(weights, api_key="k3y")) as s:
        yield s


@pytest.fixture
def scene_file(tmp_path) -> Path:
    path = tmp_path / "scene.json"
    path.write_text(json.dumps({"objects": [{"shape": "cone", "color": "green", "position": {"x": 0, "y": 0.1}}]}))
    return path


def test_console_script_is_installed_and_documents_its_commands():
    exe = Path(sys.executable).with_name("airscene")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("serve", "infer", "render"):
        assert command in out


def test_cli_render_then_infer_locally(weights, scene_file, tmp_path, capsys):
    out_png = tmp_path / "out.png"
    assert main(["render", str(scene_file), "-o", str(out_png), "--width", "96", "--weights", str(weights)]) == 0
    assert Image.open(out_png).size == (96, 96)
    capsys.readouterr()
    assert main(["infer", str(out_png), str(out_png), "--weights", str(weights), "--format", "ros"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 2 and all(a["header"]["frame_id"] == "world" for a in answers)


def test_cli_infer_and_render_through_a_server(server, scene_file, tmp_path, capsys):
    out_png = tmp_path / "out.png"
    assert main(["render", str(scene_file), "-o", str(out_png), "--url", server.url, "--api-key", "k3y"]) == 0
    assert Image.open(out_png).size == (64, 64)
    capsys.readouterr()
    assert main(["infer", str(out_png), "--url", server.url, "--api-key", "k3y", "--min-confidence", "0.5"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["image"] == {"width": 64, "height": 64}


def test_cli_reports_errors_without_a_traceback(server, tmp_path, capsys, weights):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["infer", str(bad), "--url", server.url, "--api-key", "k3y"]) == 1
    assert main(["infer", str(bad), "--weights", str(weights)]) == 1
    assert main(["infer", str(bad), "--url", server.url]) == 1  # no key
    err = capsys.readouterr().err
    assert "error 422" in err and "not a PNG or JPEG" in err and "error 401" in err and "Traceback" not in err
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps([{"shape": "blob", "color": "red", "position": {"x": 0, "y": 0}}]))
    assert main(["render", str(scene), "-o", str(tmp_path / "x.png"), "--weights", str(weights)]) == 1
    assert "unknown shape 'blob'" in capsys.readouterr().err


def test_client_infers_lists_and_raises_client_errors(server):
    with Client(server.url, api_key="k3y") as c:
        assert c.ready()
        assert c.model()["max_objects"] == 3
        one = c.infer(table_png())
        many = c.infer([table_png(), table_png(80, 80)])
        assert isinstance(one, dict) and [a["image"]["width"] for a in many] == [64, 80]
        png = c.render(one, width=32, height=32)
        assert png.startswith(b"\x89PNG")
        with pytest.raises(ClientError) as e:
            c.render({"objects": [{"shape": "cube", "color": "octarine", "position": {"x": 0, "y": 0}}]})
        assert e.value.status == 422 and e.value.detail[0]["loc"] == ["body", "objects", 0, "color"]
    with Client(server.url) as anonymous, pytest.raises(ClientError) as e:
        anonymous.infer(table_png())
    assert e.value.status == 401


def test_airscene_serve_starts_the_service(weights, tmp_path):
    import os
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("airscene")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRSCENE_")}
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--weights", str(weights), "--log-level", "warning"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, "not ready after 60 s"
            time.sleep(0.2)
        info = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        assert info["card"]["version"] == "dev-untrained" and info["version"] == "air-" + info["sha256"][:12]
    finally:
        proc.terminate()
        proc.wait(15)


def test_airscene_serve_refuses_missing_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AIRSCENE_WEIGHTS", raising=False)
    assert main(["serve", "--weights", str(tmp_path / "none.safetensors")]) == 1
    assert "not found" in capsys.readouterr().err
