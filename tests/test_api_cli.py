"""The ``airscene`` command and the Python client, against dev weights."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apiserver import LiveServer, make_dev_weights, settings_for, table_png
from PIL import Image

from app.cli import main
from app.client import Client, ClientError, ServerUnreachable


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
    # `python -m app.cli` is what the `airscene` script runs; PYTHONPATH makes it this checkout's
    # code even where the venv's editable install points at another one
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRSCENE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--weights", str(weights),
                             "--log-level", "warning"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
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


# ---------------------------------------------------------------- what a new user meets


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_cli_says_in_one_line_when_the_server_is_down(tmp_path, capsys, scene_file):
    png = tmp_path / "x.png"
    png.write_bytes(table_png())
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["infer", str(png), "--url", url]) == 1
    assert main(["render", str(scene_file), "-o", str(tmp_path / "y.png"), "--url", url]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in "".join(lines)
    for line in lines:
        assert line.startswith(f"airscene: cannot reach the airscene server at {url}") and "airscene serve" in line


def test_cli_process_exits_non_zero_without_a_traceback_when_the_server_is_down(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(table_png())
    proc = subprocess.run([sys.executable, "-m", "app.cli", "infer", str(png), "--url",
                           f"http://127.0.0.1:{_closed_port()}"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("value, words", [("2", "outside 0..1"), ("-0.1", "outside 0..1"), ("high", "not a number"),
                                          ("nan", "outside 0..1")])
def test_cli_refuses_a_bad_min_confidence_with_a_clear_message(tmp_path, capsys, weights, value, words):
    png = tmp_path / "x.png"
    png.write_bytes(table_png())
    with pytest.raises(SystemExit) as e:
        main(["infer", str(png), "--weights", str(weights), "--min-confidence", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --min-confidence: " in err and words in err
    assert "validation error" not in err and "pydantic" not in err and "Traceback" not in err


def test_cli_refuses_negative_refine_steps(tmp_path, capsys, weights):
    with pytest.raises(SystemExit):
        main(["infer", str(tmp_path / "x.png"), "--refine", "-3"])
    assert "argument --refine: -3 is below 0" in capsys.readouterr().err


@pytest.mark.parametrize("text, words", [("{\"objects\": [", "is not JSON"), ("", "is not JSON"),
                                         ("42", "holds a JSON int")])
def test_cli_render_names_a_scene_file_that_is_not_a_scene(tmp_path, capsys, weights, text, words):
    scene = tmp_path / "my-scene.json"
    scene.write_text(text)
    assert main(["render", str(scene), "-o", str(tmp_path / "x.png"), "--weights", str(weights)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"airscene: {scene} ") and words in err and "Traceback" not in err


def test_cli_render_of_an_infer_answer_keeps_the_image_size(weights, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(table_png(150, 100))
    assert main(["infer", str(photo), "--weights", str(weights)]) == 0
    answer = tmp_path / "answer.json"
    answer.write_text(capsys.readouterr().out)
    assert main(["render", str(answer), "-o", str(tmp_path / "back.png"), "--weights", str(weights)]) == 0
    assert Image.open(tmp_path / "back.png").size == (150, 100)


def test_airscene_serve_refuses_weights_it_cannot_serve(capsys, monkeypatch):
    monkeypatch.delenv("AIRSCENE_WEIGHTS", raising=False)
    supervised = Path(__file__).resolve().parent.parent / "weights" / "supervised.safetensors"
    assert main(["serve", "--weights", str(supervised), "--port", str(_closed_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("airscene: refusing to serve: ") and "is not AIR network weights" in err
    assert "supervised" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("content,words", [(None, "No such file"), ('{"position": ', "Invalid JSON"),
                                            ('{"position": {"x": 0, "y": 0, "z": 1}}', "orientation")])
def test_airscene_serve_refuses_a_camera_file_it_cannot_use(weights, tmp_path, capsys, monkeypatch, content, words):
    camera = tmp_path / "cam.json"
    if content is not None:
        camera.write_text(content)
    monkeypatch.setenv("AIRSCENE_CAMERA", str(camera))
    assert main(["serve", "--weights", str(weights), "--port", str(_closed_port())]) == 1  # not a server that never gets ready
    err = capsys.readouterr().err.strip()
    assert err.startswith("airscene: refusing to serve: camera file ") and words in err


def test_client_sends_numpy_arrays_and_pil_images(server):
    frame = np.asarray(Image.open(io.BytesIO(table_png(96, 72))).convert("RGB"))  # (72, 96, 3) uint8
    with Client(server.url, api_key="k3y") as c:
        from_array = c.infer(frame)
        from_pil = c.infer(Image.fromarray(frame))
        from_bytes = c.infer(table_png(96, 72))
        assert from_array["image"] == from_pil["image"] == {"width": 96, "height": 72}
        assert from_array["objects"] == from_pil["objects"] == from_bytes["objects"]
        both = c.infer([frame, Image.fromarray(frame[:, :, 0])])  # RGB array and a grey PIL image
        assert [a["image"]["width"] for a in both] == [96, 96]
        batch = c.infer(np.stack([frame, frame]))  # (B, H, W, 3) -> one answer per image
        assert isinstance(batch, list) and len(batch) == 2
        with pytest.raises(ValueError, match=r"image 0: expected .* uint8 array, got shape \(72, 96, 3\) dtype float32"):
            c.infer(frame.astype(np.float32) / 255)


def test_client_sends_an_opened_phone_photo_to_be_read_upright(server):
    """A PIL image opened from a JPEG that records its orientation is answered as the file is."""
    exif = Image.Exif()
    exif[0x0112] = 6  # turn a quarter clockwise to see it upright
    buf = io.BytesIO()
    Image.open(io.BytesIO(table_png(96, 72))).convert("RGB").transpose(Image.Transpose.ROTATE_90).save(
        buf, format="JPEG", quality=95, exif=exif.tobytes())
    with Client(server.url, api_key="k3y") as c, Image.open(io.BytesIO(buf.getvalue())) as opened:
        from_pil, from_file = c.infer(opened), c.infer(buf.getvalue())
    assert from_pil["image"] == from_file["image"] == {"width": 96, "height": 72}


def test_client_raises_server_unreachable_naming_the_url():
    url = f"http://127.0.0.1:{_closed_port()}"
    with Client(url) as c, pytest.raises(ServerUnreachable, match="cannot reach the airscene server at " + url):
        c.model()
    assert issubclass(ServerUnreachable, ConnectionError)
