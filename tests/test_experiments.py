"""The baselines AIR is measured against, and the report commands (bench.compare, bench.generalise)
run end to end on a tiny setting."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from bench import compare, generalise
from experiments.render_and_compare import (
    FitSettings,
    calibrate_penalty,
    choose_count,
    fit_poses,
    image_error,
    parse_budget,
    sweep_discrete,
    with_pose,
)
from experiments.anchored import AnchoredAIR, AnchoredAIRConfig, load_anchored, table_anchor
from experiments.supervised import (
    SupervisedConfig,
    SupervisedNet,
    load_supervised,
    predict_slots,
    save_supervised,
    supervised_loss,
)
from inference.checkpoint import load_weights, save_weights
from inference.metrics import yaw_error_deg
from renderer.camera import project
from renderer.dataset import SceneDataset, render_images, write_dataset
from renderer.prior import sample_scenes
from renderer.scene import SceneBatch
from renderer.world import World
from training.dair_canvas import write_canvases
from training.train import parse_config
from training.train import main as train_main

WORLD = World()
FIELDS = ("present", "shape", "color", "position", "yaw")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: with two on a 2-core machine that another job shares, every OpenMP
    region waits for its second thread (measured: a tiny training step 0.6 s instead of 5 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(scene: SceneBatch, world: World = WORLD) -> torch.Tensor:
    return render_images(scene, world).permute(0, 3, 1, 2).float() / 255.0


def _permute_slots(scene: SceneBatch, order: list[int]) -> SceneBatch:
    return SceneBatch(*(getattr(scene, f)[:, order] for f in FIELDS))


# ---- render-and-compare -----------------------------------------------------------------------
def test_render_and_compare_recovers_a_single_objects_pose_from_a_nearby_start():
    torch.manual_seed(0)
    truth = sample_scenes(WORLD, 1, seed=5, counts=1)
    start = SceneBatch(truth.present, truth.shape, truth.color,
                       truth.position + torch.tensor([0.025, -0.02, 0.0]), truth.yaw + 0.2)
    fitted = fit_poses(start, _images(truth), WORLD, FitSettings(steps=12, sweeps=0))
    before = (start.position - truth.position)[0, 0, :2].norm()
    after = (fitted.position - truth.position)[0, 0, :2].norm()
    assert after < 0.5 * before
    assert torch.equal(fitted.shape, truth.shape) and torch.equal(fitted.present, truth.present)


def test_image_error_is_zero_for_the_true_scene_only():
    truth = sample_scenes(WORLD, 2, seed=9, counts=2)
    images = _images(truth)
    assert torch.equal(image_error(truth, images, WORLD), torch.zeros(2))
    wrong = SceneBatch(truth.present, (truth.shape + 1) % len(WORLD.shapes), truth.color, truth.position, truth.yaw)
    assert (image_error(wrong, images, WORLD) > 0).all()


def test_discrete_sweep_recovers_shape_yaw_and_colour_at_the_true_position():
    truth = sample_scenes(WORLD, 1, seed=6, counts=1)
    truth = SceneBatch(truth.present, torch.tensor([[2, 0, 0]]), truth.color, truth.position, truth.yaw)  # a wedge
    truth = with_pose(truth, truth.position[..., :2], truth.yaw, WORLD)
    wrong = SceneBatch(truth.present, torch.tensor([[3, 0, 0]]), (truth.color + 1) % len(WORLD.colors),
                       truth.position, truth.yaw + 2.0)  # a sphere of another colour, turned away
    swept = sweep_discrete(with_pose(wrong, wrong.position[..., :2], wrong.yaw, WORLD), _images(truth), WORLD)
    assert swept.shape[0, 0] == 2 and swept.color[0, 0] == truth.color[0, 0]
    assert yaw_error_deg(swept.yaw[0, 0].item(), truth.yaw[0, 0].item(), 360.0) <= 360 / 8 / 2 + 1e-3


def test_count_choice_trades_fit_against_the_per_object_penalty():
    errors = torch.tensor([[0.01, 0.002, 0.0019, 0.0019]])
    assert choose_count(errors, 0.0).item() == 2  # the smaller count on ties
    assert choose_count(errors, 5e-4).item() == 1
    assert choose_count(errors, 1.0).item() == 0
    penalty = calibrate_penalty(errors.repeat(3, 1), torch.tensor([1, 1, 1]))
    assert choose_count(errors, penalty).item() == 1


def test_budget_strings_parse_and_bad_ones_are_refused():
    s = parse_budget("4x30", sweeps=1)
    assert (s.starts, s.steps, s.sweeps, s.label) == (4, 30, 1, "4x30")
    with pytest.raises(ValueError, match="STARTSxSTEPS"):
        parse_budget("4-30")
    with pytest.raises(ValueError, match="starts must be >= 1"):
        parse_budget("0x5")


# ---- supervised counterpart -------------------------------------------------------------------
@pytest.mark.parametrize("slot_attention", [False, True])
def test_supervised_loss_is_invariant_to_the_order_of_true_objects(slot_attention):
    torch.manual_seed(0)
    scene = sample_scenes(WORLD, 6, seed=3)
    images = _images(scene)
    model = SupervisedNet(SupervisedConfig.for_world(WORLD, channels=8, hidden=16, slot_attention=slot_attention))
    a, _ = supervised_loss(model, images, scene, WORLD)
    for order in ([2, 1, 0], [1, 2, 0], [0, 2, 1]):  # absent slots may come first too
        b, _ = supervised_loss(model, images, _permute_slots(scene, order), WORLD)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_supervised_attention_target_scores_each_slot_on_its_assigned_objects_cell():
    torch.manual_seed(0)
    scene = sample_scenes(WORLD, 6, seed=3, counts=2)
    images = _images(scene)
    model = SupervisedNet(SupervisedConfig.for_world(WORLD, channels=8, hidden=16, slot_attention=True))
    out = model(images)
    assert out.attention.shape == (6, 3, (WORLD.image_size // 4) ** 2)
    assert torch.allclose(out.attention.sum(-1), torch.ones(6, 3))
    without, _ = supervised_loss(model, images, scene)
    with_target, stats = supervised_loss(model, images, scene, WORLD, attention_weight=2.0)
    # two present objects, each slot's weights near uniform at init: about 2 * 2 * log(L) nats more
    assert 0 < stats["attention"] and with_target.item() > without.item() + 0.5 * 4 * math.log(256)
    assert SupervisedNet(SupervisedConfig.for_world(WORLD, channels=8, hidden=16))(images).attention is None


def test_supervised_config_written_before_slot_attention_loads_as_the_mlp_head():
    old = SupervisedConfig.for_world(WORLD, channels=8, hidden=16).to_dict()
    del old["slot_attention"]
    assert SupervisedConfig.from_dict(old).slot_attention is False


@pytest.mark.parametrize("slot_attention", [False, True])
def test_supervised_training_lowers_the_loss_and_predicts_a_renderable_scene(tmp_path, slot_attention):
    torch.manual_seed(0)
    scene = sample_scenes(WORLD, 8, seed=4)
    images = _images(scene)
    model = SupervisedNet(SupervisedConfig.for_world(WORLD, channels=16, hidden=64, slot_attention=slot_attention))
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    first, _ = supervised_loss(model, images, scene, WORLD)
    for _ in range(30):
        loss, _ = supervised_loss(model, images, scene, WORLD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first.item() - 1.0
    objects = predict_slots(model, images)
    assert (objects.pres[:, 1:] <= objects.pres[:, :-1]).all(), "present slots come first"
    save_supervised(model, WORLD, tmp_path / "s.safetensors", {"note": "test"})
    loaded, world, meta = load_supervised(tmp_path / "s.safetensors")
    assert world == WORLD and meta == {"note": "test"}
    assert torch.equal(predict_slots(loaded, images).shape, objects.shape)


# ---- DAIR training inputs ---------------------------------------------------------------------
# ---- training and reports, end to end, tiny ---------------------------------------------------
TINY = ["--channels=8", "--hidden=16", "--batch_size=4", "--max_iters=2", "--warmup_iters=1", "--log_interval=1",
        "--eval_interval=2", "--eval_scenes=4", "--threads=1"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """AIR, DAIR (from stored jittered canvases) and supervised weights from 2 training
    iterations each on 16 scenes."""
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root / "train", 16, seed=0, world=WORLD, chunk=16, progress=False)
    write_dataset(root / "val", 4, seed=1, world=WORLD, chunk=4, progress=False)
    canvas = write_canvases(SceneDataset.open(root / "train"), root / "canvas", 0.25, 2.0, progress=False)
    paths = {}
    for name, flags in (("air", []), ("dair", ["--dair=True", f"--dair_canvas={canvas}"]),
                        ("supervised", ["--objective=supervised"])):
        paths[name] = root / f"{name}.safetensors"
        assert train_main(TINY + flags + [f"--data={root / 'train'}", f"--val_data={root / 'val'}",
                                          f"--out_dir={root / 'runs' / name}", f"--export={paths[name]}"]) == 0
        assert paths[name].exists()
    return paths


def test_train_accepts_the_supervised_objective_but_not_with_dair():
    assert parse_config(["--objective=supervised"]).objective == "supervised"
    with pytest.raises(ValueError, match="dair and anchor_where apply to AIR objectives"):
        parse_config(["--objective=supervised", "--dair=true"])


def test_a_resumed_run_without_its_best_checkpoint_writes_one_and_exports(tiny_weights, tmp_path):
    """A run folder copied with ckpt.pt alone (no best.pt) resumes, validates, and exports."""
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(tiny_weights["air"].parent / "runs" / "air" / "ckpt.pt", weights_only=False)
    state["best"] = [2.0, -1.0]  # a best no validation can beat, held by the best.pt left behind
    torch.save(state, run / "ckpt.pt")
    data = tiny_weights["air"].parent
    out = tmp_path / "more.safetensors"
    assert train_main(TINY[:3] + ["--max_iters=4"] + TINY[4:] + [
        f"--data={data / 'train'}", f"--val_data={data / 'val'}", f"--out_dir={run}", "--resume=True",
        f"--export={out}"]) == 0
    assert (run / "best.pt").exists() and out.exists()
    assert torch.load(run / "best.pt", weights_only=False)["iter_num"] == 4


def test_a_run_that_averages_its_weights_validates_and_exports_the_mean(tiny_weights, tmp_path):
    """With ``--average_from`` the checkpoints keep a running weight mean (one snapshot a step
    here), and the exported weights are the best checkpoint's mean, not its last iterate."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_weights["air"].parent / "runs" / "air" / "ckpt.pt", run / "ckpt.pt")
    data, out = tiny_weights["air"].parent, tmp_path / "mean.safetensors"
    assert train_main(TINY[:3] + ["--max_iters=5"] + TINY[4:] + [
        f"--data={data / 'train'}", f"--val_data={data / 'val'}", f"--out_dir={run}", "--resume=True",
        "--average_from=2", "--average_every=1", f"--export={out}"]) == 0
    assert torch.load(run / "ckpt.pt", weights_only=False)["weight_mean"]["count"] == 3
    best = torch.load(run / "best.pt", weights_only=False)
    exported = load_weights(out)[0].state_dict()
    name = next(k for k in best["weight_mean"]["mean"] if k in exported)
    torch.testing.assert_close(exported[name], best["weight_mean"]["mean"][name])
    assert not torch.allclose(exported[name], best["model"][name])


def test_compare_report_has_every_method_row_and_a_plot(tiny_weights, tmp_path):
    out = tmp_path / "compare.md"
    argv = ["--scenes", "3", "--seed", "7", "--air", str(tiny_weights["air"]), "--dair", str(tiny_weights["dair"]),
            "--supervised", str(tiny_weights["supervised"]), "--refine", "1", "--rc-budgets", "1x1,1x2",
            "--rc-scenes", "2", "--rc-calibrate", "1", "--rc-sweeps", "1", "--rc-batch", "2",
            "--rc-timing-images", "1", "--timing-images", "1", "--batch", "2", "--threads", "1", "--out", str(out)]
    assert compare.main(argv) == 0
    text = out.read_text()
    for row in ("AIR", "AIR + refinement", "DAIR", "Supervised", "Render-and-compare 1x1", "Render-and-compare 1x2"):
        assert f"\n| {row} | " in text
    assert "not trained" not in text
    assert "## Targets" in text and "faster per image than render-and-compare" in text
    assert out.with_suffix(".png").stat().st_size > 0


def test_compare_report_says_not_trained_and_how_to_train_when_weights_are_missing(tmp_path):
    out = tmp_path / "compare.md"
    missing = tmp_path / "none"
    argv = ["--scenes", "2", "--air", str(missing / "air.safetensors"), "--dair", str(missing / "dair.safetensors"),
            "--supervised", str(missing / "s.safetensors"), "--rc-budgets", "", "--threads", "1", "--out", str(out)]
    assert compare.main(argv) == 0
    text = out.read_text()
    for row in ("AIR", "AIR + refinement", "DAIR", "Supervised"):
        assert f"\n| {row} | not trained |" in text
    assert "--objective=supervised" in text and "--dair=True" in text
    assert "not measured" in text


def test_generalise_report_evaluates_present_weights_and_lists_the_missing(tiny_weights, tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    for src, dst in (("dair", "dair-012"), ("supervised", "supervised-013")):
        for suffix in (".safetensors", ".json"):
            shutil.copy(tiny_weights[src].with_suffix(suffix), wdir / f"{dst}{suffix}")
    out = tmp_path / "generalise.md"
    assert generalise.main(["--scenes", "2", "--weights-dir", str(wdir), "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| extrapolation |", "| interpolation |"))]
    assert len(rows) == 6
    assert sum("not trained" in r for r in rows) == 4
    assert "warning: trained on counts 0..N, not 0,1,2" in text  # the tiny weights saw every count
    assert "--counts=0,1,2" in text and "--counts=0,1,3" in text
    assert "DAIR extrapolation count accuracy >= 90%:" in text and "not measured" not in text.split("## Target")[1]


def test_generalise_prints_the_training_commands(capsys):
    assert generalise.main(["--print-commands"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("python")]
    assert len(lines) == 6 and all("training.train" in x for x in lines)
    assert sum("--counts=0,1,2" in x for x in lines) == 3 and sum("--counts=0,1,3" in x for x in lines) == 3


def test_table_anchor_maps_projected_object_centres_back_to_the_table():
    coef = torch.tensor(table_anchor(WORLD)).view(2, -1).T
    xy = torch.tensor([[0.0, 0.0], [0.2, -0.2], [-0.25, 0.1], [0.1, 0.25]])
    s = WORLD.image_size
    uv = project(torch.cat([xy, torch.full((4, 1), 0.08)], 1), WORLD, s, s)[0] / s * 2 - 1
    u, v = uv[:, 0], uv[:, 1]
    back = torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], 1) @ coef
    assert (back - xy).norm(dim=1).max() < 0.005  # metres


def test_anchored_positions_follow_the_attention_and_stay_within_the_offset():
    images = _images(sample_scenes(WORLD, 8, seed=3))
    torch.manual_seed(0)
    cfg = AnchoredAIRConfig.for_world(WORLD, channels=16, hidden=32, anchor=table_anchor(WORLD), position_scale=0.05)
    model = AnchoredAIR(AnchoredAIRConfig.from_dict(cfg.to_dict()))  # the anchor survives the JSON round trip
    with torch.no_grad():
        model.out_where.bias[:2] = 50.0  # a huge raw offset is bounded by position_scale
        ctx = model.context(model.encode(images), images)
        _, out = model.step(0, model.initial_state(ctx), ctx)
    centre = (out.attention[:, :, None] * ctx.flat[:, :, -2:]).sum(1)
    u, v = centre[:, 0], centre[:, 1]
    under = torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], 1) @ model.anchor
    offset = out.where_mean - under
    assert torch.allclose(offset, torch.full_like(offset, 0.05), atol=1e-4)
    with pytest.raises(ValueError, match="anchor needs"):
        AnchoredAIRConfig(anchor=(1.0, 2.0))


def test_the_product_loader_refuses_anchored_weights_and_the_anchored_loader_reads_them(tmp_path):
    cfg = AnchoredAIRConfig.for_world(WORLD, channels=16, hidden=32, anchor=table_anchor(WORLD), position_scale=0.05)
    path = tmp_path / "anchored.safetensors"
    save_weights(AnchoredAIR(cfg), WORLD, path)
    with pytest.raises(ValueError, match="anchored network"):
        load_weights(path)
    model, _, _ = load_anchored(path)
    assert isinstance(model, AnchoredAIR) and model.config == cfg


def test_elbo_seeds_scores_a_runs_last_iterate_against_the_targets(tmp_path):
    """experiments.elbo_seeds on a run folder holding an untrained anchored network's ckpt.pt:
    every metric comes back, and an untrained network meets no target."""
    from experiments.elbo_seeds import meets_targets, score_run

    world = World(image_size=32, max_objects=2, shapes=World().shapes[:3], colors=World().colors[:3])
    cfg = AnchoredAIRConfig.for_world(world, channels=16, hidden=32, anchor=table_anchor(world), position_scale=0.05)
    model = AnchoredAIR(cfg)
    torch.save({"model_args": cfg.to_dict(), "model": model.state_dict(), "world": world.to_dict(), "iter_num": 7},
               tmp_path / "ckpt.pt")
    row = score_run(tmp_path, scenes=8, seed=1)
    assert row["iter"] == 7
    for key in ("count_accuracy", "shape_accuracy", "color_accuracy", "position_median_cm"):
        assert key in row and (math.isnan(row[key]) or row[key] >= 0)
    assert not meets_targets(row)


def test_cast_shadow_experiment_scores_both_renderings_of_the_same_scenes(capsys):
    from experiments.cast_shadows import main as cast_main

    assert cast_main(["--scenes", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("contact blob", "cast shadow"))]
    assert len(rows) == 2 and all("shape" in r and "position median" in r for r in rows)


def test_mesh_normals_experiment_scores_three_shadings_of_the_same_scenes(capsys):
    from experiments.mesh_normals import main as normals_main

    assert normals_main(["--scenes", "4", "--seed", "3", "--mirror", "off"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("true normals", "apex averaged", "edges soft"))]
    assert len(rows) == 3 and all("shape" in r and "position median" in r for r in rows)
