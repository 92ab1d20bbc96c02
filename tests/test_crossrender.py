"""The cross-renderer development set: specs, labels and the scorer (Blender only where installed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from bench.crossrender.blender import blender_available
from bench.crossrender.make import labels_from_specs, write_set
from bench.crossrender.score import BANDS, band_of, score_set
from bench.crossrender.specs import (
    DEV_ENVELOPE,
    camera_dict,
    objects_in_view,
    sample_spec,
    sample_specs,
)
from renderer.camera import camera_info, cameras_from_dict
from renderer.pinhole import envelope_violations, spec_cameras


def test_specs_are_seeded_and_prefix_stable(world):
    a = sample_specs(world, 6, seed=11)
    assert a == sample_specs(world, 6, seed=11)
    assert a[:4] == sample_specs(world, 4, seed=11)
    assert a != sample_specs(world, 6, seed=12)


def test_every_object_is_in_view_and_every_camera_in_the_envelope(world):
    specs = sample_specs(world, 40, seed=5)
    assert sum(len(s["objects"]) for s in specs) > 40
    for spec in specs:
        assert objects_in_view(spec, world), spec["file"]
        assert envelope_violations(cameras_from_dict(spec["camera"]), DEV_ENVELOPE) == [""], spec["camera"]
        assert spec["camera"]["width"] > spec["camera"]["height"] or spec["aspect"] == "1:1"
    assert {s["aspect"] for s in specs} == {"1:1", "4:3", "16:9"}


def test_objects_in_view_rejects_an_object_off_the_image(world):
    spec = next(s for s in sample_specs(world, 20, seed=5) if s["objects"])
    spec["objects"][0]["position"] = {"x": 3.0, "y": 0.0, "z": 0.07}
    assert not objects_in_view(spec, world)


def test_spec_camera_states_the_same_pose_as_the_renderers_camera_info(world):
    """The optical quaternion and intrinsics in a spec follow renderer.camera.camera_info."""
    stated = camera_dict(spec_cameras(world.camera, 1, 120, 160))
    info = camera_info(world, 120, 160)
    q, r = stated["orientation"], info["orientation"]
    assert min(sum(abs(q[k] - r[k]) for k in "xyzw"), sum(abs(q[k] + r[k]) for k in "xyzw")) < 1e-5
    for k in "xyz":
        assert stated["position"][k] == pytest.approx(info["position"][k], abs=1e-5)
    assert stated["fy"] == pytest.approx(info["fy"], rel=1e-5)
    assert stated["elevation_deg"] == pytest.approx(world.camera.elevation_deg, abs=1e-3)
    assert stated["azimuth_deg"] == pytest.approx(world.camera.azimuth_deg, abs=1e-3)
    assert stated["roll_deg"] == pytest.approx(0.0, abs=1e-3)


def test_write_set_refuses_to_replace_another_set(world, tmp_path):
    write_set(tmp_path, 3, 11, world)
    write_set(tmp_path, 3, 11, world)  # the same set again: resumable
    with pytest.raises(ValueError, match="another set"):
        write_set(tmp_path, 3, 12, world)


def test_band_edges():
    elevation = BANDS[0][2]
    assert band_of(35.0, elevation) == "35-50 deg"
    assert band_of(50.0, elevation) == "50-65 deg"
    assert band_of(80.0, elevation) == "65-80 deg"
    assert band_of(80.5, elevation) is None


def _tiny_set(world, tmp_path):
    """Three specs with known objects; blank PNGs (the fake predictor never looks)."""
    specs = [sample_spec(world, 11, i) for i in range(3)]
    truth = [
        [{"shape": "cube", "color": "red", "position": {"x": 0.0, "y": 0.0, "z": 0.065}, "yaw_deg": 10.0}],
        [{"shape": "box", "color": "blue", "position": {"x": 0.1, "y": 0.1, "z": 0.0475}, "yaw_deg": 30.0},
         {"shape": "sphere", "color": "green", "position": {"x": -0.1, "y": 0.1, "z": 0.07}, "yaw_deg": 0.0}],
        [{"shape": "wedge", "color": "cyan", "position": {"x": -0.1, "y": -0.1, "z": 0.06}, "yaw_deg": -50.0}],
    ]
    for spec, objs in zip(specs, truth):
        spec["objects"] = objs
    labels = labels_from_specs(specs, world, 11)
    (tmp_path / "images").mkdir()
    for e in labels["images"]:
        Image.new("RGB", (e["camera"]["width"], e["camera"]["height"])).save(tmp_path / e["file"])
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    return truth


def test_scorer_on_a_tiny_set_with_known_answers(world, tmp_path):
    truth = _tiny_set(world, tmp_path)
    answers = [
        truth[0],  # perfect, yaw off by a full cube turn of 90 degrees (no error)
        [truth[1][0] | {"position": {"x": 0.13, "y": 0.14, "z": 0.0475}, "yaw_deg": 40.0}],  # one missed
        [truth[2][0] | {"shape": "box", "color": "red"}],  # wrong shape and colour
    ]
    answers[0] = [answers[0][0] | {"yaw_deg": 100.0}]
    seen = []

    def predict(images, cameras):
        seen.extend(cameras)
        assert len(images) == len(cameras)
        return answers[len(seen) - len(images):len(seen)]

    result = score_set(predict, tmp_path, batch=2)
    s = result.overall.summary()
    assert result.images == 3 and result.missing == 0
    assert [c["width"] for c in seen] == [json.loads((tmp_path / "labels.json").read_text())["images"][i]
                                          ["camera"]["width"] for i in range(3)]
    assert s["count_accuracy"] == pytest.approx(2 / 3)
    assert s["matched_objects"] == 3
    assert s["shape_accuracy"] == pytest.approx(2 / 3)
    assert s["color_accuracy"] == pytest.approx(2 / 3)
    assert sorted(result.overall.pos_err_cm) == pytest.approx([0.0, 0.0, 5.0])
    assert sorted(result.overall.yaw_err_deg) == pytest.approx([0.0, 0.0, 10.0])
    bands = sum(b.summary()["scenes"] for b in result.slices["camera elevation"].values())
    assert bands == 3


def test_scorer_skips_images_not_rendered_yet(world, tmp_path):
    _tiny_set(world, tmp_path)
    (tmp_path / "images" / "000001.png").unlink()
    result = score_set(lambda images, cameras: [[] for _ in images], tmp_path)
    assert (result.images, result.missing) == (2, 1)
    assert result.overall.summary()["count_accuracy"] == 0.0


@pytest.mark.skipif(not blender_available(), reason="needs .venv-blender (make blender-env)")
def test_blender_silhouettes_match_our_renderer(world, tmp_path):
    """Same specs, same stated cameras: Blender's object and table silhouettes land where ours do."""
    from bench.crossrender.check import failures, run_check

    rows = run_check(world, scenes=2, seed=3, out=tmp_path)
    assert len(rows) >= 6
    assert failures(rows) == []
    wedges = [r for r in rows if r.name == "wedge"]
    assert all(r.iou_turned_180 < r.iou - 0.1 for r in wedges)
    assert not any(math.isnan(r.iou) for r in rows) and np.isfinite([r.centroid_px for r in rows]).all()


def test_todays_camera_control_set_uses_the_worlds_camera(world):
    for spec in sample_specs(world, 5, seed=12, todays_camera=True):
        cam = spec["camera"]
        assert (cam["width"], cam["height"], spec["aspect"]) == (160, 160, "1:1")
        assert cam["elevation_deg"] == pytest.approx(world.camera.elevation_deg, abs=1e-3)
        assert cam["fov_deg"] == pytest.approx(world.camera.fov_deg, abs=1e-3)
        assert objects_in_view(spec, world)
