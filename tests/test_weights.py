"""End to end with the shipped weights: the model that ships must work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.checkpoint import load_weights
from inference.evaluate import report as evaluation_report

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "air.safetensors"


@pytest.fixture(scope="module")
def shipped():
    assert WEIGHTS.exists(), f"shipped weights missing: {WEIGHTS}"
    return load_weights(WEIGHTS)


@pytest.fixture(scope="module")
def report(shipped):
    model, world, _ = shipped
    torch.set_num_threads(2)
    return evaluation_report(model, world, scenes=200, seed=2024)


def test_shipped_weights_count_objects_on_held_out_prior_scenes(report):
    assert report["count_accuracy"] >= 0.95


def test_shipped_weights_identify_and_place_objects(report):
    # floors well below the model card's numbers; they catch a broken export or preprocessing
    assert report["shape_accuracy"] >= 0.85
    assert report["color_accuracy"] >= 0.95
    assert report["position_error_cm"]["median"] <= 2.0


def test_shipped_weights_are_small_and_pickle_free(shipped):
    assert WEIGHTS.stat().st_size < 8 * 1024 * 1024
    assert WEIGHTS.with_suffix(".json").exists()
    _, _, meta = shipped
    assert "train" in meta
