"""The in-process API (``inference.api.Predictor``): the model without HTTP, on images in memory."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from apiserver import make_dev_weights, table_png
from PIL import Image

from app import convert
from app.engine import Engine
from inference.api import Predictor
from inference.checkpoint import save_weights
from inference.network import AIR, AIRConfig
from renderer.world import World

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_dev_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def predictor(weights) -> Predictor:
    return Predictor.load(weights)


def _frame(width: int = 96, height: int = 72) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(table_png(width, height))).convert("RGB"))


def test_predictor_infers_a_numpy_frame_as_the_service_does(predictor, weights):
    frame = _frame()
    answer = predictor.infer(frame)
    assert answer["image"] == {"width": 96, "height": 72} and answer["frame_id"] == "world"
    assert answer["count"] == len(answer["objects"]) == 3 and answer["camera"]["width"] == 96
    engine = Engine.load(weights, "cpu")
    served = engine.infer_batch([engine.preprocess(Image.fromarray(frame))])[0]
    assert answer["objects"] == [o.model_dump() for o in convert.objects(served, engine.world, 0.0)]
    assert answer["model"] == {"version": engine.version, "device": "cpu",
                               "calibrated": engine.predictor.calibration.fitted}
    assert answer["quality"] == served.quality  # the same fit, trust and flag on both paths


def test_predictor_reads_an_opened_image_upright_as_its_exif_orientation_says(predictor):
    """A phone's photo opened with PIL (which does not turn it) reads as a viewer shows it, as
    /infer reads it; turning is done once, however often the image passes through."""
    frame = _frame()
    exif = Image.Exif()
    exif[0x0112] = 8  # turn a quarter counter-clockwise to see it upright
    buf = io.BytesIO()
    Image.fromarray(frame).transpose(Image.Transpose.ROTATE_270).save(buf, format="PNG", exif=exif.tobytes())
    with Image.open(io.BytesIO(buf.getvalue())) as stored:
        assert stored.size == (72, 96)
        answer = predictor.infer(stored)
    want = predictor.infer(frame)
    assert answer["image"] == want["image"] == {"width": 96, "height": 72}
    assert answer["objects"] == want["objects"]


def test_predictor_takes_pil_images_and_lists_in_order(predictor):
    frame = _frame()
    one = predictor.infer(Image.fromarray(frame))
    assert isinstance(one, dict) and one["objects"] == predictor.infer(frame)["objects"]
    many = predictor.infer([frame, Image.fromarray(frame).convert("L"), _frame(64, 64)])
    assert [a["image"]["width"] for a in many] == [96, 96, 64]
    assert len(predictor.infer(np.stack([frame, frame]))) == 2  # (B, H, W, 3): one answer per image
    assert predictor.infer([]) == []


def test_predictor_min_confidence_and_refine(predictor):
    frame = _frame()
    assert predictor.infer(frame, min_confidence=1.0)["count"] == 0
    refined = predictor.infer(frame, refine=2)
    assert refined["count"] == 3 and all(np.isfinite(o["position"]["x"]) for o in refined["objects"])


@pytest.mark.parametrize("image, words", [
    (np.zeros((8, 8, 3), np.float32), r"image 0: expected .* uint8 array, got shape \(8, 8, 3\) dtype float32"),
    (np.zeros((8, 8, 2), np.uint8), r"got shape \(8, 8, 2\)"),
    ("photo.png", "expected a PIL image or a numpy array, got str"),
])
def test_predictor_rejects_what_is_not_an_image_naming_it(predictor, image, words):
    with pytest.raises(ValueError, match=words):
        predictor.infer([image])


def test_predictor_version_identifies_the_weights_file(weights, tmp_path):
    version = Predictor.load(weights).version
    assert version == "air-" + hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    for suffix in (".safetensors", ".json"):
        shutil.copy(weights.with_suffix(suffix), (tmp_path / "renamed").with_suffix(suffix))
    assert Predictor.load(tmp_path / "renamed.safetensors").version == version  # same bytes, same version
    torch.manual_seed(1)
    world = World()
    save_weights(AIR(AIRConfig.for_world(world)), world, tmp_path / "other.safetensors", {"version": "dev-untrained"})
    other = Predictor.load(tmp_path / "other.safetensors").version
    assert re.fullmatch(r"air-[0-9a-f]{12}", other) and other != version  # same card, other weights
    doc = json.loads(weights.with_suffix(".json").read_text())
    for name, limit in (("calibrated", 0.5), ("recalibrated", 0.6)):
        doc["meta"]["calibration"] = {"limits": {"max_spill": limit}}
        shutil.copy(weights, tmp_path / f"{name}.safetensors")
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    calibrated, again = (Predictor.load(tmp_path / f"{n}.safetensors").version for n in ("calibrated", "recalibrated"))
    assert re.fullmatch(version + r"\.[0-9a-f]{6}", calibrated) and re.fullmatch(version + r"\.[0-9a-f]{6}", again)
    assert calibrated != again  # the same network, bounded otherwise: its answers differ, so does its version


def test_predictor_refuses_weights_that_are_not_an_air_network():
    with pytest.raises(ValueError, match="supervised.safetensors is not AIR network weights"):
        Predictor.load(ROOT / "weights" / "supervised.safetensors")


def test_readme_in_process_example_runs_with_the_shipped_weights(monkeypatch):
    """The README's in-process example, run as written (from the repository root)."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "Predictor.load" in b]
    assert len(blocks) == 1, "the README shows the in-process API once"
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert scope["answer"]["model"]["version"].startswith("air-")
