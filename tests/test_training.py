"""Training: the objectives (amortised, ELBO), the training script's configuration and data pool."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from experiments.anchored import AnchoredAIR, AnchoredAIRConfig, table_anchor
from experiments.config import ResearchConfig
from inference.distributions import Latents
from inference.network import AIR, AIRConfig
from renderer.dataset import SceneDataset, render_images, write_dataset
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World
from training.dair_canvas import CanvasStore, jittered, write_canvases
from training.elbo import (ELBO, Steps, count_log_probs, enumerated_elbo, gaussian_blur, log_likelihood, offsets_cm,
                           pres_prior, sample_q)
from inference.amortised import amortised_loss
from training.objectives import dair_residuals, nearest_first
from training.train import ConfigError, get_lr, parse_config, scene_pool
from training.train import run as train_run

WORLD = World()
FIELDS = ("present", "shape", "color", "position", "yaw")


def _images(scene: SceneBatch, world: World = WORLD) -> torch.Tensor:
    return render_images(scene, world).permute(0, 3, 1, 2).float() / 255.0


def test_amortised_loss_is_invariant_to_the_order_of_true_objects(batch):
    images, scene = batch
    torch.manual_seed(0)
    model = AIR(AIRConfig.for_world(WORLD))
    three = scene.count == 3
    assert three.any()
    flipped = SceneBatch(*(x.flip(1) if x.dim() >= 2 else x for x in
                           (scene.present, scene.shape, scene.color, scene.position, scene.yaw)))
    sel = three.nonzero()[:, 0]
    a, _ = amortised_loss(model, images[sel], scene.select(sel))
    b, _ = amortised_loss(model, images[sel], flipped.select(sel))
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_amortised_training_lowers_the_loss_on_a_handful_of_scenes(batch):
    images, scene = batch
    torch.manual_seed(0)
    model = AIR(AIRConfig.for_world(WORLD, channels=32, hidden=64))
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    first, _ = amortised_loss(model, images, scene)
    for _ in range(40):
        loss, _ = amortised_loss(model, images, scene)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, _ = amortised_loss(model, images, scene)
    assert last.item() < first.item() - 1.0


SMALL = World(max_objects=1, image_size=32)
SMALL_SHAPES = len(SMALL.shapes)


def test_every_elbo_term_is_finite_on_random_input():
    torch.manual_seed(0)
    model = AIR(AIRConfig.for_world(SMALL, channels=16, hidden=32))
    images = torch.rand(3, 3, 32, 32)
    sample = sample_q(model, images, SMALL, anneal=0.5, start=0.99)
    log_lik = log_likelihood(sample.objects, images, SMALL, 0.1)
    for term in (sample.log_q_discrete, sample.log_q_continuous, sample.log_prior, log_lik):
        assert term.shape == (3,)
        assert torch.isfinite(term).all()


def test_presence_prior_anneals_to_the_count_prior_or_to_a_sparsity_constant():
    assert pres_prior(2, 0, 0.0, 0.99) == 0.99
    assert pres_prior(2, 0, 1.0, 0.99) == pytest.approx(2 / 3) and pres_prior(2, 1, 1.0, 0.99) == pytest.approx(1 / 2)
    assert pres_prior(2, 1, 1.0, 0.99, end=0.01) == pytest.approx(0.01)
    assert pres_prior(2, 0, 0.5, 0.99, end=0.01) == pytest.approx(0.5)


def test_relaxed_colour_renders_the_q_mean_and_trains_colour_by_gradient():
    torch.manual_seed(0)
    model = AIR(AIRConfig.for_world(SMALL, channels=16, hidden=32))
    images = _images(sample_scenes(SMALL, 3, seed=4, counts=1), SMALL)
    sample = sample_q(model, images, SMALL, anneal=1.0, start=0.99, force_present=True, relax_color=True)
    assert sample.albedo.shape == (3, 1, 3) and torch.isfinite(sample.albedo).all()
    log_lik = log_likelihood(sample.objects, images, SMALL, 0.1, albedo=sample.albedo)
    elbo = log_lik + sample.log_prior - sample.log_q_discrete - sample.log_q_continuous
    elbo.sum().backward()  # pathwise: the colour head gets a gradient without any score function
    assert model.out_what.weight.grad[SMALL_SHAPES:].abs().sum() > 0


def test_elbo_training_lowers_the_negative_elbo_on_a_handful_of_images():
    torch.manual_seed(0)
    scene = sample_scenes(SMALL, 4, seed=1, counts=1)
    images = _images(scene, SMALL)
    model = AnchoredAIR(AnchoredAIRConfig.for_world(SMALL, channels=16, hidden=32, anchor=table_anchor(SMALL),
                                                    position_scale=0.05, position_bound=SMALL.placement_half_extent))
    # the early phase of an ELBO run from scratch: presence forced on, colour relaxed
    cfg = ResearchConfig(lr=1e-3, warmup_iters=0, baseline_lr=3e-2, likelihood_scale=0.1, pres_warmup_iters=100,
                         elbo_relax_color_iters=100)
    objective = ELBO(model, SMALL, cfg)
    optimizer = torch.optim.Adam(objective.param_groups(), lr=cfg.lr)

    def neg_elbo() -> float:
        torch.manual_seed(123)
        x = images.repeat(4, 1, 1, 1)
        with torch.no_grad():
            s = sample_q(model, x, SMALL, 1.0, cfg.pres_prior_start, force_present=True, relax_color=True)
            ll = log_likelihood(s.objects, x, SMALL, cfg.likelihood_scale, cfg.elbo_blur_px, albedo=s.albedo)
            return float(-(ll + s.log_prior - s.log_q_discrete - s.log_q_continuous).mean())

    before = neg_elbo()
    for it in range(50):
        loss, _ = objective.loss(images, None, None, it)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    after = neg_elbo()
    # an untrained network's estimate moves by a few nats between iterations
    assert after < before - 15.0


def test_train_overrides_are_type_checked():
    cfg = parse_config(["--max_iters=10", "--lr", "0.01", "--dair=true"])
    assert (cfg.max_iters, cfg.lr, cfg.dair) == (10, 0.01, True)
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        parse_config(["--nope=1"])
    with pytest.raises(ConfigError, match="must be int"):
        parse_config(["--max_iters=ten"])
    cfg = ResearchConfig(max_iters=1000, warmup_iters=100, lr=1.0, min_lr=0.0)
    assert get_lr(cfg, 0) == pytest.approx(0.01) and get_lr(cfg, 1000) == pytest.approx(0.0)


def test_a_later_stage_counts_its_schedule_from_where_it_starts_and_needs_the_run_to_be_there(tmp_path):
    stage = ResearchConfig(max_iters=6000, schedule_from=5000, warmup_iters=0, lr=3e-4, min_lr=2e-5)
    assert get_lr(stage, 5000) == pytest.approx(3e-4)
    assert get_lr(stage, 5500) == pytest.approx((3e-4 + 2e-5) / 2)
    assert get_lr(stage, 6000) == pytest.approx(2e-5)
    warm = replace(stage, warmup_iters=100)
    assert get_lr(warm, 5000) == pytest.approx(3e-6) and get_lr(warm, 5099) == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match="schedule_from must be in"):
        parse_config(["--max_iters=100", "--schedule_from=100"])
    # a fresh run folder has reached iteration 0, not the stage's 5000: refused before anything is written
    out = tmp_path / "fresh"
    with pytest.raises(ConfigError, match="starts at iteration 5000, but .* is at 0"):
        train_run(replace(stage, out_dir=str(out)))
    assert not out.exists()


def test_train_refuses_a_device_it_cannot_use(monkeypatch):
    with pytest.raises(ConfigError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        parse_config(["--device=tpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        parse_config(["--device=cuda:1"])
    assert parse_config(["--device=cpu"]).device == "cpu"


def test_a_recipe_sets_the_config_and_flags_after_it_win(tmp_path):
    recipe = tmp_path / "r.py"
    recipe.write_text('max_iters = 300\nlr = 1\nout_dir = "runs/x"\n')
    cfg = parse_config([str(recipe), "--out_dir=runs/y"])
    assert (cfg.max_iters, cfg.lr, cfg.out_dir) == (300, 1.0, "runs/y")
    recipe.write_text("max_iter = 300\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_iter'"):
        parse_config([str(recipe)])
    recipe.write_text('max_iters = "many"\n')
    with pytest.raises(ConfigError, match="max_iters must be int"):
        parse_config([str(recipe)])


def test_every_shipped_recipe_parses():
    from pathlib import Path

    recipes = sorted(Path("training/recipes").glob("*.py"))
    assert len(recipes) >= 5
    for recipe in recipes:
        assert parse_config([str(recipe)]).export.startswith("weights/")


def test_train_help_exits_zero_and_documents_every_setting():
    run = subprocess.run([sys.executable, "-m", "training.train", "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    for name in ("max_iters", "attention_weight", "likelihood_scale", "counts"):
        assert f"--{name}=" in run.stdout


def test_train_refuses_an_unknown_or_ill_typed_key_in_one_line():
    for flag, message in (("--nope=1", "unknown setting 'nope'"), ("--max_iters=ten", "must be int")):
        run = subprocess.run([sys.executable, "-m", "training.train", flag], capture_output=True, text=True)
        assert run.returncode == 2
        assert run.stderr.strip().count("\n") == 0 and message in run.stderr and "Traceback" not in run.stderr


def test_every_setting_is_documented():
    from training.config import documentation

    assert all(doc for _, _, doc in documentation(ResearchConfig))


def test_gaussian_blur_keeps_the_mean_and_spreads_a_point():
    x = torch.zeros(1, 3, 15, 15)
    x[0, :, 7, 7] = 1.0
    y = gaussian_blur(x, 1.5)
    assert torch.allclose(y.sum(), x.sum(), atol=1e-5)
    assert y[0, 0, 7, 7] < 0.1 and y[0, 0, 7, 9] > 0.01
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_scene_pool_keeps_only_the_allowed_counts(tmp_path):
    write_dataset(tmp_path / "d", 40, seed=5, world=SMALL, chunk=20, progress=False)
    data = SceneDataset.open(tmp_path / "d")
    counts = np.asarray(data.latents["present"]).sum(1)
    pool = scene_pool(data, "1")
    assert 0 < len(pool) == int((counts == 1).sum()) < 40
    assert set(counts[pool].tolist()) == {1}
    assert np.array_equal(scene_pool(data, ""), np.arange(40))
    assert np.array_equal(scene_pool(data, "", limit=7), np.arange(7))


def test_dair_residuals_subtract_the_true_objects_of_earlier_slots():
    scene = sample_scenes(WORLD, 3, seed=2, counts=2)
    images = render(scene, WORLD, "hard").permute(0, 3, 1, 2)  # as infer renders its finds
    res = dair_residuals(images, scene, WORLD)
    assert len(res) == WORLD.max_objects
    table = render(SceneBatch(scene.present & False, *(getattr(scene, f) for f in FIELDS[1:])), WORLD, "hard")
    assert torch.allclose(res[0], images - table.permute(0, 3, 1, 2))
    assert res[1].abs().sum() < res[0].abs().sum()  # one object explained
    assert torch.equal(res[2], torch.zeros_like(images))  # both explained: nothing left


def test_nearest_first_sorts_present_objects_by_distance_to_the_camera_and_keeps_them_whole():
    scene = sample_scenes(WORLD, 40, seed=9)
    ordered = nearest_first(scene)
    assert torch.equal(ordered.count, scene.count)
    for b in range(40):
        n = int(scene.count[b])
        assert ordered.present[b, :n].all() and not ordered.present[b, n:].any()
        x = ordered.position[b, :n, 0]
        assert (x[1:] >= x[:-1]).all()
        # each object keeps its own shape, colour, position and yaw
        before = {(int(scene.shape[b, i]), int(scene.color[b, i]), round(float(scene.yaw[b, i]), 5))
                  for i in range(n)}
        after = {(int(ordered.shape[b, i]), int(ordered.color[b, i]), round(float(ordered.yaw[b, i]), 5))
                 for i in range(n)}
        assert before == after
    assert (nearest_first(scene).position != scene.position).any()  # the prior's order is not this one


def test_stored_canvases_give_the_rendered_residuals_of_the_nearest_first_order(tmp_path):
    write_dataset(tmp_path / "d", 24, seed=4, world=WORLD, chunk=24, progress=False)
    data = SceneDataset.open(tmp_path / "d")
    store = CanvasStore.open(write_canvases(data, tmp_path / "c", progress=False), data)
    idx = np.array([2, 5, 11, 23])
    images = torch.from_numpy(np.array(data.images[idx])).permute(0, 3, 1, 2).float() / 255
    expected = dair_residuals(images, nearest_first(data.scenes(idx)), WORLD)
    got = store.residuals(images, idx)
    assert len(got) == len(expected) == WORLD.max_objects
    for g, e in zip(got, expected):
        assert (g - e).abs().max() <= 0.5 / 255 + 1e-6  # canvases are stored as uint8


def test_canvas_jitter_moves_only_table_position_and_yaw_by_about_its_std():
    scene = sample_scenes(WORLD, 500, seed=6, counts=3)
    moved = jittered(scene, 0.25, 2.0, torch.Generator().manual_seed(0))
    d = (moved.position - scene.position)[scene.present]
    assert torch.equal(d[:, 2], torch.zeros_like(d[:, 2]))
    assert abs(float(d[:, :2].std()) - 0.0025) < 0.0002  # metres
    assert abs(math.degrees(float((moved.yaw - scene.yaw).std())) - 2.0) < 0.15
    assert torch.equal(moved.shape, scene.shape) and torch.equal(moved.color, scene.color)
    still = jittered(scene, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(still.position, scene.position) and torch.equal(still.yaw, scene.yaw)


def test_canvases_resume_with_the_same_jitter_and_refuse_other_settings_or_data(tmp_path):
    write_dataset(tmp_path / "d", 12, seed=4, world=WORLD, chunk=12, progress=False)
    write_dataset(tmp_path / "e", 12, seed=5, world=WORLD, chunk=12, progress=False)
    data = SceneDataset.open(tmp_path / "d")
    whole = np.load(write_canvases(data, tmp_path / "a", 1.0, 10.0, seed=3, progress=False) / "canvas.npy")
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["done"] == 12 and meta["jitter_cm"] == 1.0
    meta["done"] = 0  # as if interrupted before the first chunk was flushed
    (tmp_path / "a" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="canvases for 0 of 12"):
        CanvasStore.open(tmp_path / "a", data)
    again = np.load(write_canvases(data, tmp_path / "a", 1.0, 10.0, seed=3, progress=False) / "canvas.npy")
    assert np.array_equal(whole, again)
    with pytest.raises(ValueError, match="other settings"):
        write_canvases(data, tmp_path / "a", 0.5, 10.0, seed=3, progress=False)
    with pytest.raises(ValueError, match="was made from"):
        CanvasStore.open(tmp_path / "a", SceneDataset.open(tmp_path / "e"))
    with pytest.raises(ValueError, match="applies to objective=amortised with dair=True"):
        parse_config(["--dair_canvas=x"])


# ---------------------------------------------------------------- the enumerated estimator


def test_count_probabilities_follow_the_stopping_process_and_sum_to_one():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    lq, lp = count_log_probs(logits, [pres_prior(3, t, 1.0, 0.99) for t in range(3)])
    assert lq.shape == lp.shape == (4, 4)
    assert torch.allclose(lq.exp().sum(1), torch.ones(4), atol=1e-6)
    on = torch.sigmoid(logits)
    assert torch.allclose(lq[:, 0].exp(), 1 - on[:, 0], atol=1e-6)
    assert torch.allclose(lq[:, 2].exp(), on[:, 0] * on[:, 1] * (1 - on[:, 2]), atol=1e-6)
    assert torch.allclose(lq[:, 3].exp(), on.prod(1), atol=1e-6)
    # the truncated-uniform count prior gives every count 1 / (N + 1)
    assert torch.allclose(lp.exp(), torch.full((4, 4), 0.25), atol=1e-6)


def _one_object_steps(shape: int, pres_logit: float, shape_logits: torch.Tensor) -> Steps:
    """Hand-made q output for SMALL (N = 1): a red object at (0.05, -0.05), leaf tensors for the
    presence and shape logits."""
    from torch.distributions import Categorical

    from inference.distributions import Latents

    objects = Latents(torch.ones(1, 1), torch.tensor([[shape]]), torch.tensor([[0]]),
                      torch.tensor([[[0.05, -0.05]]]), torch.zeros(1, 1))
    colours = len(SMALL.colors)
    return Steps(objects, torch.tensor([[pres_logit]], requires_grad=True), torch.zeros(1, 1), torch.zeros(1, 1),
                 [Categorical(logits=shape_logits)], [Categorical(logits=torch.zeros(1, colours))])


def _likelihood(objects, x, albedo):
    """log p(x | z) in SMALL at a 0.5 px edge blur, as ``enumerated_elbo`` takes it."""
    return log_likelihood(objects, x, SMALL, 0.1, 0.5, 0.0, albedo)


def _one_object_image(shape: int, at: tuple[float, float]) -> torch.Tensor:
    """SMALL's image of one red object of ``shape`` at table point ``at``."""
    return _images(SceneBatch(torch.ones(1, 1, dtype=torch.bool), torch.tensor([[shape]]), torch.tensor([[0]]),
                              torch.tensor([[[*at, SMALL.shapes[shape].resting_z]]]), torch.zeros(1, 1)), SMALL)


def _cube_image() -> torch.Tensor:
    """SMALL's image of one red cube at (0.05, -0.05), the truth of the estimator's tests."""
    return _one_object_image(SMALL.shape_names.index("cube"), (0.05, -0.05))


def _gradients(steps: Steps, images: torch.Tensor, warm: str = "", at_least_one: bool = False) -> torch.Tensor:
    torch.manual_seed(0)
    objective, value, _ = enumerated_elbo(steps, images, [0.5], _likelihood, warm, draw_at_least_one=at_least_one)
    assert torch.isfinite(objective).all() and torch.isfinite(value).all()
    objective.sum().backward()
    return steps.pres_logit.grad


def test_enumerated_elbo_drops_an_object_from_an_empty_table_and_keeps_a_real_one():
    empty = _images(SceneBatch(torch.zeros(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.long),
                               torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, 3), torch.zeros(1, 1)), SMALL)
    cube = SMALL.shape_names.index("cube")
    one = _cube_image()
    flat = torch.zeros(1, SMALL_SHAPES)
    assert _gradients(_one_object_steps(cube, 0.0, flat), empty)[0, 0] < 0  # presence pushed down
    assert _gradients(_one_object_steps(cube, 0.0, flat), one)[0, 0] > 0  # presence pushed up


def test_local_expectation_moves_q_towards_the_true_shape_whatever_was_drawn():
    cube = SMALL.shape_names.index("cube")
    one = _cube_image()
    sphere = SMALL.shape_names.index("sphere")
    logits = torch.zeros(1, SMALL_SHAPES, requires_grad=True)
    # the drawn shape is a sphere; n >= 1 is forced, so the object is present at c*
    _gradients(_one_object_steps(sphere, 0.0, logits), one, warm="first")
    assert int(logits.grad.argmax()) == cube and logits.grad[0, cube] > 0 and logits.grad[0, sphere] < 0
    # q all but sure the table is empty: the likelihood's shape signal is gone, unless c* >= 1
    for at_least_one, teaches in ((False, False), (True, True)):
        logits = torch.zeros(1, SMALL_SHAPES, requires_grad=True)
        _gradients(_one_object_steps(sphere, -30.0, logits), one, at_least_one=at_least_one)
        assert (int(logits.grad.argmax()) == cube and logits.grad[0, cube] > 1e-3) == teaches


def test_local_scale_anneals_from_the_running_rms_to_one():
    model = AIR(AIRConfig.for_world(SMALL, channels=16, hidden=32))
    always = ELBO(model, SMALL, ResearchConfig())
    always.local_var = 2500.0
    assert always.local_scale(0) == always.local_scale(10_000) == pytest.approx(50.0)
    annealed = ELBO(model, SMALL, ResearchConfig(elbo_local_rms_iters=100, elbo_local_anneal_iters=100))
    annealed.local_var = 2500.0
    assert annealed.local_scale(99) == pytest.approx(50.0)
    assert annealed.local_scale(150) == pytest.approx(50.0 ** 0.5)
    assert annealed.local_scale(200) == annealed.local_scale(5000) == pytest.approx(1.0)
    assert ELBO(model, SMALL, ResearchConfig(elbo_local_rms=False)).local_scale(0) == 1.0


def test_shape_positions_put_each_shape_at_its_own_place():
    """A network with shape_positions: greedy answers and draws use the chosen shape's shifted
    mean, and the enumerated estimator renders each shape variant at its own place."""
    from inference.distributions import greedy, where_mean_for

    model = AIR(AIRConfig.for_world(SMALL, channels=16, hidden=32, shape_positions=True))
    images = _images(sample_scenes(SMALL, 3, seed=4, counts=1), SMALL)
    ctx = model.context(model.encode(images), images)
    _, out = model.step(0, model.initial_state(ctx), ctx)
    assert out.where_shift.shape == (3, SMALL_SHAPES, 2) and out.where_log_std.shape == (3, 2)
    assert out.where_shift.abs().max() == 0  # a fresh network: every shape at the common place
    with torch.no_grad():
        model.out_where.weight[4:].normal_()
    _, out = model.step(0, model.initial_state(ctx), ctx)
    assert 0 < out.where_shift.abs().max() <= model.config.position_scale
    shape = out.shape_logits.argmax(-1)
    expected = out.where_mean + out.where_shift[torch.arange(3), shape]
    assert torch.allclose(greedy(out, model.yaw, torch.ones(3)).position, expected)
    assert not torch.allclose(where_mean_for(out, (shape + 1) % SMALL_SHAPES), expected)

    # a cube at (0.05, -0.05); q drew a sphere, whose place is 6 cm further along x
    cube, sphere = SMALL.shape_names.index("cube"), SMALL.shape_names.index("sphere")
    one = _cube_image()
    shift = torch.zeros(1, 1, SMALL_SHAPES, 2)
    shift[0, 0, sphere, 0] = 0.06
    advantage = []
    for where_shift in (None, shift):
        logits = torch.zeros(1, SMALL_SHAPES, requires_grad=True)
        steps = _one_object_steps(sphere, 0.0, logits)
        objects = steps.objects._replace(position=torch.tensor([[[0.11, -0.05]]]))
        _gradients(replace(steps, objects=objects, where_shift=where_shift), one, warm="first")
        advantage.append(float(logits.grad[0, cube] - logits.grad[0, sphere]))
    assert advantage[1] > 0 and advantage[1] > advantage[0] + 1e-3


def test_fit_places_teaches_an_undrawn_shape_where_it_would_fit():
    """q drew a sphere; the cube (the truth) was not drawn, and its place is 3 cm right of the
    object: with fit_places the cube's shift is pulled left, towards the object; without, untouched."""
    cube, sphere = SMALL.shape_names.index("cube"), SMALL.shape_names.index("sphere")
    one = _cube_image()
    for fit, pulled in ((False, False), (True, True)):
        shift = torch.zeros(1, 1, SMALL_SHAPES, 2)
        shift[0, 0, cube, 0] = 0.03
        shift.requires_grad_(True)
        steps = replace(_one_object_steps(sphere, 0.0, torch.zeros(1, SMALL_SHAPES)), where_shift=shift)
        torch.manual_seed(0)
        objective, _, _ = enumerated_elbo(steps, one, [0.5], _likelihood, "first", fit_places=fit)
        objective.sum().backward()
        grad = torch.zeros_like(shift) if shift.grad is None else shift.grad
        assert (float(grad[0, 0, cube, 0]) < -1e-3) == pulled
        assert float(grad[0, 0, sphere].abs().sum()) == 0.0  # the drawn shape's place: the pathwise term's


def test_a_sharp_likelihood_peaks_at_the_true_place_once_enough_faces_are_kept():
    """At 32x32 a sphere's facets are smaller than a pixel: with 6 faces kept per pixel the
    nearer ones crowd out the face that covers it, the table shows through, and the likelihood
    at a sharp edge (0.25 px) is higher a centimetre away than at the truth; with 16 the truth
    beats every place a centimetre or more away."""
    sphere = SMALL.shape_names.index("sphere")
    image = _one_object_image(sphere, (0.05, -0.05))
    steps = [(dx * 0.005, dy * 0.005) for dx in range(-3, 4) for dy in range(-3, 4) if dx * dx + dy * dy >= 4]
    places = torch.tensor([[0.05, -0.05]] + [[0.05 + dx, -0.05 + dy] for dx, dy in steps])[:, None]
    n = len(places)
    objects = Latents(torch.ones(n, 1), torch.full((n, 1), sphere), torch.zeros(n, 1, dtype=torch.long), places,
                      torch.zeros(n, 1))
    for faces, peaks in ((6, False), (16, True)):
        ll = log_likelihood(objects, image.expand(n, -1, -1, -1), SMALL, 0.1, 0.25, faces_per_pixel=faces)
        assert bool(ll[0] > ll[1:].max()) == peaks


def test_profile_compares_every_shape_at_its_best_place_nearby():
    """q places a cone 1.5 cm too far from the camera. Compared at that one place a wedge explains
    the image best, and the local expectation pushes q towards the wedge; with every shape at its
    best place on a 3 x 3 grid 1.5 cm apart (``profile``) it pushes q towards the cone."""
    cone, wedge = SMALL.shape_names.index("cone"), SMALL.shape_names.index("wedge")
    image = _one_object_image(cone, (0.05, -0.05))
    grid = torch.tensor([-0.015, 0.0, 0.015])
    grid = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    for profile, pushed_to in ((None, wedge), (grid[grid.norm(dim=1) > 0], cone)):
        logits = torch.zeros(1, SMALL_SHAPES, requires_grad=True)
        steps = _one_object_steps(cone, 0.0, logits)
        steps = replace(steps, objects=steps.objects._replace(position=torch.tensor([[[0.065, -0.05]]])))
        torch.manual_seed(0)
        objective, _, _ = enumerated_elbo(steps, image, [0.5], lambda o, x, a: log_likelihood(
            o, x, SMALL, 0.1, 0.25, 0.0, a, faces_per_pixel=16), "first", profile=profile)
        objective.sum().backward()
        assert int(logits.grad.argmax()) == pushed_to and logits.grad[0, pushed_to] > 0


def test_self_label_teaches_the_best_shape_where_q_has_all_but_ruled_it_out():
    """The image is a cube; q is all but sure of a sphere (q(cube) ~ 6e-6). The local
    expectation's push on the cube's logit is q(cube) times the likelihood's margin, next to
    nothing; the self-label adds ``self_label`` (1 - q(cube)) to it, and nothing to the rest."""
    cube, sphere = SMALL.shape_names.index("cube"), SMALL.shape_names.index("sphere")
    pushes = []
    for self_label in (0.0, 10.0):
        logits = torch.full((1, SMALL_SHAPES), -12.0)
        logits[0, sphere] = 0.0
        logits.requires_grad_(True)
        torch.manual_seed(0)
        objective, _, _ = enumerated_elbo(_one_object_steps(sphere, 0.0, logits), _cube_image(), [0.5], _likelihood,
                                          "first", self_label=self_label)
        objective.sum().backward()
        pushes.append(logits.grad[0])
    assert 0 < pushes[0][cube] < 0.05
    assert pushes[1][cube] - pushes[0][cube] == pytest.approx(10.0, rel=1e-3)
    others = [k for k in range(SMALL_SHAPES) if k != cube]
    assert torch.allclose(pushes[1][others] - pushes[0][others], -10.0 * logits.softmax(-1)[0, others].detach())


def test_profile_offsets_are_read_in_centimetres_and_bad_text_is_refused():
    assert offsets_cm("") is None
    assert torch.allclose(offsets_cm("1.5:0,0:-3"), torch.tensor([[0.015, 0.0], [0.0, -0.03]]))
    for bad in ("1.5", "a:b", "1:2:3"):
        with pytest.raises(ValueError, match="elbo_profile"):
            offsets_cm(bad)


def test_edge_blur_anneals_only_when_an_end_is_set():
    model = AIR(AIRConfig.for_world(SMALL, channels=16, hidden=32))
    fixed = ELBO(model, SMALL, ResearchConfig(elbo_blur_px=1.0))
    assert fixed.edge_blur(0) == fixed.edge_blur(10_000) == 1.0
    annealed = ELBO(model, SMALL, ResearchConfig(elbo_blur_px=1.0, elbo_blur_end_px=0.25, elbo_blur_anneal_iters=100))
    assert annealed.edge_blur(0) == 1.0 and annealed.edge_blur(50) == pytest.approx(0.625)
    assert annealed.edge_blur(100) == annealed.edge_blur(5000) == pytest.approx(0.25)


def test_the_likelihood_tells_the_reduced_worlds_shapes_apart_only_with_sharp_edges():
    """Everything true but the shape: the likelihood's best shape is the true one at a 0.25 px
    edge blur; at 1 px a cone and a sphere look alike (why the ELBO recipe anneals the blur)."""
    from inference.distributions import Latents

    world = World(image_size=32, max_objects=1, shapes=tuple(s for s in WORLD.shapes if s.name in ("cube", "sphere", "cone")),
                  colors=WORLD.colors[:3])
    scene = sample_scenes(world, 60, seed=7, counts=1)
    images = _images(scene, world)

    def accuracy(blur: float) -> float:
        lls = []
        for k in range(3):
            objects = Latents(scene.present.float(), torch.full_like(scene.shape, k), scene.color,
                              scene.position[..., :2], scene.yaw)
            lls.append(log_likelihood(objects, images, world, 0.1, blur))
        return float((torch.stack(lls, 1).argmax(1) == scene.shape[:, 0]).float().mean())

    assert accuracy(0.25) >= 0.95
    assert accuracy(1.0) <= 0.8


def test_the_enumerated_recipe_trains_a_dair_network_with_finite_gradients():
    """One step of the from-scratch recipe (enumerated estimator, DAIR, anchored positions) on
    two-object scenes: a finite loss, finite gradients, and the residual encoder in use."""
    from training.train import model_config, parse_config

    cfg = parse_config(["training/recipes/elbo_enumerated.py"])
    world = World(image_size=32, max_objects=2)
    model = AnchoredAIR(model_config(cfg, world))
    assert model.config.dair and model.config.anchor
    images = _images(sample_scenes(world, 4, seed=2, counts=2), world)
    objective = ELBO(model, world, cfg)
    for it in (0, cfg.pres_warmup_iters + 1):  # warm-up, then the exact count sum
        model.zero_grad()
        loss, stats = objective.loss(images, None, None, it)
        loss.backward()
        assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert model.residual_encoder.down[0].weight.grad.abs().sum() > 0


def test_soup_interpolates_two_weight_files_and_refuses_other_architectures(tmp_path):
    """``training.soup``: alpha 0 is the first file, 1 the second, 0.5 their mean, tensor by
    tensor; the written file names both sources; a different architecture is refused."""
    from inference.checkpoint import interpolate as soup
    from inference.checkpoint import load_weights, save_weights
    from training.soup import main as soup_main

    world = World()
    torch.manual_seed(0)
    a = AIR(AIRConfig.for_world(world))
    torch.manual_seed(1)
    b = AIR(AIRConfig.for_world(world))
    name = next(k for k, v in a.state_dict().items() if v.is_floating_point())
    for alpha, want in ((0.0, a.state_dict()[name]), (1.0, b.state_dict()[name]),
                        (0.5, (a.state_dict()[name] + b.state_dict()[name]) / 2)):
        torch.testing.assert_close(soup(a, b, alpha)[name], want)
    wide = AIR(replace(AIRConfig.for_world(world), hidden=a.config.hidden * 2))
    with pytest.raises(ValueError, match="same architecture"):
        soup(a, wide, 0.5)
    save_weights(a, world, tmp_path / "a.safetensors")
    save_weights(b, world, tmp_path / "b.safetensors")
    assert soup_main([str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--alpha", "0.25",
                      "--out", str(tmp_path / "s.safetensors")]) == 0
    s, _, meta = load_weights(tmp_path / "s.safetensors")
    torch.testing.assert_close(s.state_dict()[name], 0.75 * a.state_dict()[name] + 0.25 * b.state_dict()[name])
    assert meta["soup"]["alpha"] == 0.25 and meta["soup"]["b"]["file"] == "b.safetensors"


def test_the_weight_mean_averages_its_snapshots_and_lends_them_to_the_model_for_a_block():
    """``inference.averaging``: the mean of the snapshots, tensor by tensor; inside ``applied``
    the model carries it and afterwards its own weights again; a checkpoint's weights are the
    mean where it keeps one; a mean of another architecture is refused."""
    from inference.averaging import WeightMean, model_weights

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    mean, snapshots = WeightMean(model), []
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        snapshots.append(model.weight.detach().clone())
        mean.add(model)
    want, live = torch.stack(snapshots).mean(0), model.weight.detach().clone()
    torch.testing.assert_close(mean.mean["weight"], want)
    assert not torch.allclose(want, live)
    with mean.applied(model):
        torch.testing.assert_close(model.weight.detach(), want)
    torch.testing.assert_close(model.weight.detach(), live)
    torch.testing.assert_close(model_weights({"model": model.state_dict(), "weight_mean": mean.state()})["weight"], want)
    torch.testing.assert_close(model_weights({"model": model.state_dict()})["weight"], live)
    with pytest.raises(ValueError, match="another architecture"):
        WeightMean(torch.nn.Linear(3, 4)).load(mean.state())
