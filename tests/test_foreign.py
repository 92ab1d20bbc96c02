"""The out-of-set detector (inference.foreign, training.outliers): what it reads, how it is
stored with the weights and bounded, and that its training draws stay away from the battery."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.battery import FOREIGN_SHAPES
from inference.api import Predictor
from inference.calibration import Calibration, WorldLimits
from inference.fit import fit_answers
from inference.foreign import ForeignHead, cells_on_table
from renderer.appearance import default_look
from renderer.dataset import PhotoData, write_dataset
from renderer.photo import render_photo
from renderer.pinhole import spec_cameras
from training.outliers import HOLD_AWAY, MIN_FACTOR, SIZE_RANGE, Head, foreign_spec
from training.calibrate import main as calibrate_main
from training.outliers import main as outliers_main

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "air.safetensors"


def _head(channels: int = 66, seed: int = 0) -> Head:
    torch.manual_seed(seed)
    head = Head(torch.randn(channels), torch.rand(channels) + 0.5, width=8)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return head


def test_the_stored_detector_scores_as_the_trained_one():
    """Frozen to plain numbers, through the weights' JSON and back, the head gives the trained
    module's scores."""
    head = _head()
    features, seen = torch.randn(4, 66, 20, 20), torch.rand(4, 20, 20) > 0.3
    stored = ForeignHead.from_meta(json.loads(json.dumps(head.frozen().to_meta())))
    with torch.no_grad():
        assert torch.allclose(stored.score(features, seen), head(features, seen), atol=1e-4)
    meta = {"calibration": {"limits": {"max_foreign": 0.9}, "foreign": stored.to_meta()}}
    assert Calibration.from_meta(meta).foreign == stored
    cut = {**stored.to_meta(), "width": 9}
    with pytest.raises(ValueError, match="do not fit its shape"):
        ForeignHead.from_meta(cut)
    older = {"hidden": 32, "channels": 66, "kernel": 3, "float32_base64": stored.to_meta()["float32_base64"]}
    with pytest.raises(ValueError, match="older layout.*training.outliers fit"):
        ForeignHead.from_meta(older)
    assert Calibration.from_meta(meta).to_meta()["foreign"] == stored.to_meta()


def test_only_cells_seen_and_drawn_as_table_or_object_count():
    """The detector reads the cells that the camera saw and that the answer draws as table or
    object: what lies beyond the table (legs, floor, room) changes nothing."""
    stored = _head().frozen()
    features = torch.randn(1, 66, 20, 20)
    coverage = torch.zeros(1, 1, 80, 80)
    coverage[..., :40, :] = 1  # the upper half of the view was seen
    drawn = torch.zeros(1, 40, 40, dtype=torch.bool)
    drawn[:, :, :20] = True  # table and objects drawn in the left half (at the fit's 40 x 40)
    cells = cells_on_table(coverage, drawn)
    assert cells.shape == (1, 20, 20) and int(cells.sum()) == 10 * 10 and bool(cells[0, :10, :10].all())
    base = stored.score(features, cells)
    beyond, inside = features.clone(), features.clone()
    beyond[..., 11:, :] += 5 * torch.randn(66, 9, 20)  # unseen (a cell's 3 x 3 context reaches one cell out)
    beyond[..., :10, 11:] += 5 * torch.randn(66, 10, 9)  # seen, but floor
    inside[..., :10, :10] += 5 * torch.randn(66, 10, 10)
    assert torch.allclose(stored.score(beyond, cells), base)
    assert not torch.allclose(stored.score(inside, cells), base)


@pytest.mark.parametrize("shape", range(6))
def test_odd_sizes_are_odd_and_stay_away_from_the_battery(world, shape):
    base = world.shapes[shape]
    g = torch.Generator().manual_seed(shape)
    for _ in range(300):
        spec = foreign_spec(base, g)
        factors = [abs(math.log(a / b)) for a, b in zip(spec.size, base.size)]
        assert spec.name == base.name and max(factors) >= math.log(MIN_FACTOR) - 1e-9
        assert all(SIZE_RANGE[0] <= s <= SIZE_RANGE[1] for s in spec.size)
        for held in FOREIGN_SHAPES:
            if held.name == spec.name:
                assert max(abs(math.log(a / c)) for a, c in zip(spec.size, held.size)) >= math.log(HOLD_AWAY)


def test_world_limits_bound_the_detector_score(world, make_scene):
    scene = make_scene(("cube", "red", 0.1, 0.0, 0.0))
    cams = spec_cameras(world.camera, 1, 80, 80)
    image = render_photo(scene, world, cams, default_look(world, 1), torch.Generator().manual_seed(0))
    image = image.permute(0, 3, 1, 2).expand(2, -1, -1, -1)
    fit = fit_answers(scene.select(torch.tensor([0, 0])), image, torch.ones_like(image[:, :1]), cams.select(
        torch.tensor([0, 0])), world)
    limits = WorldLimits(max_foreign=0.5)
    assert limits.check(fit).tolist() == [True, True]  # no detector: nothing to bound
    assert limits.check(replace(fit, foreign=torch.tensor([0.2, 0.8]))).tolist() == [True, False]


def test_render_and_fit_write_a_detector_the_service_uses(tmp_path):
    """The exposure set is rendered (half holding odd-sized objects, as labelled), the head
    trained into a copy of the weights' JSON, and answers then carry its score."""
    data = tmp_path / "exposure.pt"
    assert outliers_main(["render", "--images", "100", "--seed", "3", "--out", str(data)]) == 0
    got = torch.load(data)
    assert got["features"].shape[0] == 100 and got["coverage"].shape == (100, 20, 20)
    assert not got["foreign"][:50].any() and got["foreign"][50:].float().mean() > 0.3
    weights = tmp_path / "air.safetensors"
    shutil.copy(WEIGHTS, weights)
    doc = json.loads(WEIGHTS.with_suffix(".json").read_text())
    doc["meta"]["calibration"].pop("foreign", None)
    weights.with_suffix(".json").write_text(json.dumps(doc))
    assert Predictor.load(weights).infer(Image.new("RGB", (320, 240), (90, 90, 90)))["quality"]["foreign"] is None
    assert outliers_main(["fit", "--data", str(data), "--weights", str(weights), "--epochs", "2"]) == 0
    predictor = Predictor.load(weights)
    assert predictor.calibration.foreign is not None
    assert predictor.calibration.limits == Predictor.load(WEIGHTS).calibration.limits  # the rest kept
    score = predictor.infer(Image.new("RGB", (320, 240), (90, 90, 90)))["quality"]["foreign"]
    assert 0.0 <= score <= 1.0
    val = tmp_path / "val"
    write_dataset(val, 32, 7, predictor.world, chunk=16, progress=False, photo=PhotoData())
    assert calibrate_main(["--weights", str(weights), "--data", str(val), "--scenes", "32"]) == 0
    calibrated = Predictor.load(weights).calibration
    assert calibrated.foreign == predictor.calibration.foreign and calibrated.limits.max_foreign < 1.0
    record = json.loads(weights.with_suffix(".json").read_text())["meta"]["calibration"]["fitted_on"]["foreign"]
    assert record["images"] == 100 and record["data"] == [str(data)]


def test_shipped_weights_carry_a_bounded_detector():
    predictor = Predictor.load(WEIGHTS)
    cal = predictor.calibration
    assert cal.foreign is not None and 0.5 < cal.limits.max_foreign < 1.0
    fitted = json.loads(WEIGHTS.with_suffix(".json").read_text())["meta"]["calibration"]["fitted_on"]
    assert fitted["foreign"]["images"] >= 10000 and all("outliers" in d for d in fitted["foreign"]["data"])


def test_the_mirror_reading_averages_the_detector_over_both_views(world, make_scene):
    """With the mirror reading, the score is the mean of the view's logit and its mirror's: a
    scene and its mirror image get the same score."""
    predictor = Predictor.load(WEIGHTS)
    scene = make_scene(("cube", "red", 0.12, 0.05, 0.3), ("cone", "blue", -0.1, -0.1, 0.0))
    cams = spec_cameras(world.camera, 1, 240, 320)
    image = render_photo(scene, world, cams, default_look(world, 1), torch.Generator().manual_seed(0))[0]
    shown = Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    one = predictor.infer(shown)["quality"]["foreign"]
    flipped = predictor.infer(shown.transpose(Image.Transpose.FLIP_LEFT_RIGHT))["quality"]["foreign"]
    single = Predictor(predictor.model, predictor.world, predictor.version, replace(predictor.calibration, mirror=False))
    alone = single.infer(shown)["quality"]["foreign"]
    assert one == pytest.approx(flipped, abs=0.02) and alone != pytest.approx(one, abs=1e-4)
