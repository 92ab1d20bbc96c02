"""Adaptation by the ELBO (inference.elbo, inference.adapt, renderer.learned): the terms, the
learned look, a run that checkpoints, resumes and writes servable weights, and the collapse guard."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.cli import _unservable, main
from inference.adapt import AdaptCollapse, AdaptConfig, CollapseGuard, _step, adapt, image_files, load_views
from inference.calibration import Calibration
from inference.checkpoint import load_weights
from inference.elbo import NVIL, Baseline, Sample, best_shapes, elbo_terms, self_label_loss
from inference.infer import infer
from inference.network import AIR, AIRConfig
from inference.distributions import Latents
from inference.views import to_view, view_cameras, view_input
from renderer.learned import LearnedLook
from renderer.photo import photo_jpeg
from renderer.appearance import default_look
from renderer.pinhole import sample_cameras
from renderer.prior import sample_scenes
from renderer.world import World

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "air.safetensors"
TINY = AdaptConfig(steps=3, batch=4, look_steps=1, collapse_window=50, checkpoint_every=1, threads=1, size=40)


def _views(world: World, n: int, seed: int, counts: int | None = None):
    g = torch.Generator().manual_seed(seed)
    cams = sample_cameras(world.envelope, n, g, world.image_size, world.image_size)
    scenes = sample_scenes(world, n, generator=g, cameras=[cams], counts=counts)
    view = view_cameras(cams, world)
    return scenes, view


def test_every_elbo_term_is_finite_and_of_the_right_sign_on_random_input():
    torch.manual_seed(0)
    world = World().with_(image_size=40)
    model = AIR(AIRConfig.for_world(world, view_inputs=True))
    _, view = _views(world, 4, 1)
    v = view_input(torch.rand(4, 3, 40, 40), view, world)
    look = LearnedLook(world)
    elbo, sample, log_lik = elbo_terms(model, look, v, world, rho=0.5, size=20)
    for t in (elbo, sample.log_q_discrete, sample.log_q_continuous, sample.log_prior, log_lik):
        assert t.shape == (4,) and torch.isfinite(t).all()
    assert (sample.log_q_discrete <= 0).all()  # log-probabilities of discrete draws
    # a Gaussian's density is at most 1 / (sigma sqrt(2 pi)) per seen pixel
    bound = 3 * 20 * 20 * -math.log(float(look.sigma().detach()) * math.sqrt(2 * math.pi))
    assert (log_lik <= bound).all()
    surrogate, base_loss = NVIL().surrogate(elbo, sample.log_q_discrete, Baseline()(v.pixels))
    assert base_loss >= 0
    (-elbo.mean() + surrogate + base_loss).backward()
    grads = [p.grad for p in [*model.parameters(), *look.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert look.light_dir.grad.abs().sum() > 0 and model.out_where.weight.grad.abs().sum() > 0


def test_the_self_label_names_the_shape_that_explains_the_image_and_pulls_q_toward_it():
    """Objects drawn with the wrong shape at their true place: for each, the likelihood likes its
    true shape best among all six, and -log q(k*) lowers every other shape's logit."""
    world = World().with_(image_size=40)
    scenes, view = _views(world, 8, 5, counts=1)
    look = LearnedLook(world)
    with torch.no_grad():
        pixels = look.render(scenes, view).permute(0, 3, 1, 2)
    v = view_input(pixels, view, world)
    centre, yaw = to_view(scenes, view)
    shapes = len(world.shapes)
    wrong = torch.remainder(scenes.shape + 1, shapes)
    objects = Latents(scenes.present.float(), wrong, scenes.color, centre, yaw)
    raw = torch.randn(8, scenes.shape.shape[1], shapes, requires_grad=True)
    zero = torch.zeros(8)
    sample = Sample(objects, zero, zero, zero, raw.log_softmax(-1), centre[:, :, None].expand(-1, -1, shapes, -1),
                    yaw[:, :, None].expand(-1, -1, shapes))
    best = best_shapes(sample, v, world, look, size=40)
    assert torch.equal(best[scenes.present], scenes.shape[scenes.present])
    self_label_loss(sample, best).backward()
    grad = raw.grad[scenes.present]
    k = best[scenes.present]
    at_best = grad.gather(-1, k[:, None])[:, 0]
    assert (at_best < 0).all() and (grad.sum(-1).abs() < 1e-6).all()
    assert (raw.grad[~scenes.present] == 0).all()


def test_an_adaptation_step_with_the_self_label_trains_the_shape_head():
    torch.manual_seed(0)
    world = World().with_(image_size=40)
    model = AIR(AIRConfig.for_world(world, view_inputs=True))
    with torch.no_grad():
        model.out_pres.bias.fill_(6.0)  # every step draws an object
    _, view = _views(world, 4, 1)
    v = view_input(torch.rand(4, 3, 40, 40), view, world)
    cfg = replace(TINY, self_label=1.0, sleep_weight=0.0, size=20)
    torch.manual_seed(1)
    loss, stats, _ = _step(model, LearnedLook(world), Baseline(), NVIL(), v, world, cfg, torch.Generator(), True)
    assert stats["count"] > 0 and 0.0 <= stats["self_label_agree"] <= 1.0
    loss.backward()
    with_label = model.out_what.weight.grad.clone()
    assert torch.isfinite(with_label).all() and with_label[:len(world.shapes)].abs().sum() > 0
    model.zero_grad()
    torch.manual_seed(1)  # the same draws
    loss, plain, _ = _step(model, LearnedLook(world), Baseline(), NVIL(), v, world, replace(cfg, self_label=0.0),
                        torch.Generator(), True)
    assert "self_label_agree" not in plain
    loss.backward()  # the same draws without the self-label: the shape head learns something else
    assert not torch.allclose(model.out_what.weight.grad[:len(world.shapes)], with_label[:len(world.shapes)])


def test_the_learned_look_moves_toward_a_known_different_light():
    """Images drawn under a warm light from another side, a dark table: fitting theta alone (the
    scenes known) makes the drawings match and the learned light warm. The light's direction is
    weakly identified by a few small objects at this size (ambient, gamma and the table trade off
    against it), so it is not asserted (model card)."""
    torch.manual_seed(0)
    world = World().with_(image_size=40)
    scenes, view = _views(world, 12, 2, counts=3)
    truth = LearnedLook(world)
    with torch.no_grad():
        truth.light_dir.copy_(torch.tensor([-0.6, -0.5, 0.6]))
        truth.log_key.copy_(torch.tensor([0.8, 0.55, 0.3]).log())
        truth.table_logit.copy_(torch.tensor([-1.2, -1.5, -1.9]))
        images = truth.render(scenes, view)
    look = LearnedLook(world)
    warmth = lambda m: float(m.log_key[0].detach() - m.log_key[2].detach())  # noqa: E731  log(red / blue) of the key light
    opt = torch.optim.Adam(look.parameters(), lr=0.05)
    errors = []
    for _ in range(60):
        loss = ((look.render(scenes, view) - images) ** 2).mean()
        errors.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert errors[-1] < errors[0] / 20, errors
    assert warmth(look) > 0.1 * warmth(truth) > 0 == warmth(LearnedLook(world))


def test_the_learned_cone_tip_rounds_where_the_images_draw_it_rounded():
    """Cones whose tips are shaded as a mesh renderer's smooth cone (rounded: the normal there
    straight up) under a light from above: fitting theta (the scenes known) learns the rounding;
    it changes cones only."""
    torch.manual_seed(0)
    world = World().with_(image_size=40)
    scenes, view = _views(world, 4, 3, counts=3)
    cones = replace(scenes, shape=torch.full_like(scenes.shape, world.shape_index("cone")))
    none = replace(scenes, shape=torch.where(scenes.shape == world.shape_index("cone"), 0, scenes.shape))
    truth = LearnedLook(world)
    with torch.no_grad():
        truth.light_dir.copy_(torch.tensor([0.2, 0.1, 1.0]))
        truth.log_specular.fill_(math.log(0.4))
        truth.apex_logit.fill_(3.0)  # rounding 0.95
        images = truth.render(cones, view)
        sharp = LearnedLook(world)
        rounded = copy.deepcopy(sharp)
        rounded.apex_logit.fill_(3.0)
        assert torch.equal(sharp.render(none, view), rounded.render(none, view))
        assert not torch.allclose(sharp.render(cones, view), images)
    look = LearnedLook(world)
    opt = torch.optim.Adam(look.parameters(), lr=0.1)
    for _ in range(60):
        loss = ((look.render(cones, view) - images) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rounding = float(look.apex_rounding().detach())
    assert rounding > 0.5 > float(LearnedLook(world).apex_rounding().detach())
    assert look.describe()["apex_rounding"] == round(rounding, 4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six JPEG photos from the world's fixed camera (128 px), in a folder, as a user has them."""
    _, world, _ = load_weights(WEIGHTS)
    out = tmp_path_factory.mktemp("mine")
    from renderer.pinhole import spec_cameras

    g = torch.Generator().manual_seed(5)
    cams = spec_cameras(world.camera, 6, 128, 128)
    scenes = sample_scenes(world, 6, generator=g, cameras=[cams])
    for i, img in enumerate(photo_jpeg(scenes, world, cams, default_look(world, 6), g)):
        Image.fromarray(img).save(out / f"{i:02d}.jpg")
    (out / "notes.txt").write_text("not an image")
    return out


def test_adaptation_reads_its_images_upright_as_their_exif_orientation_says(folder, tmp_path):
    """A folder from a camera that records how it was held reads as the upright images would."""
    world = World()
    first = image_files(folder)[0]
    turned = tmp_path / "turned"
    turned.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down
    with Image.open(first) as im:
        im.transpose(Image.Transpose.ROTATE_180).save(turned / "a.png", exif=exif.tobytes())
        im.save(turned / "b.png")  # the upright image, losslessly
    views = load_views(image_files(turned), world)
    assert torch.equal(views.pixels[0], views.pixels[1])


def test_adaptation_checkpoints_resumes_bit_for_bit_and_writes_servable_weights(folder, tmp_path):
    _, world, _ = load_weights(WEIGHTS)
    views = load_views(image_files(folder), world)
    assert views.pixels.shape == (6, 3, world.image_size, world.image_size)
    straight = adapt(views, WEIGHTS, tmp_path / "a.safetensors", TINY, progress=False)
    adapt(views, WEIGHTS, tmp_path / "b.safetensors", replace(TINY, steps=2), progress=False)
    ckpt = tmp_path / "b.safetensors.ckpt.pt"
    state = torch.load(ckpt, weights_only=False)
    del state["config"]["device"]  # as checkpoints written before the device setting have it
    torch.save(state, ckpt)
    resumed = adapt(views, WEIGHTS, tmp_path / "b.safetensors", TINY, progress=False)
    assert straight["steps"] == resumed["steps"] == 3 and straight["look"] == resumed["look"]
    a, _, meta = load_weights(tmp_path / "a.safetensors")
    b, _, _ = load_weights(tmp_path / "b.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    shipped, _, _ = load_weights(WEIGHTS)
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), shipped.state_dict().values()))
    assert meta["adapted"]["look"]["noise_std"] > 0 and set(meta["calibration"]) == {"limits", "mirror"}
    calibration = Calibration.from_meta(meta)
    source = Calibration.from_meta(load_weights(WEIGHTS)[2])
    assert not calibration.fitted and (calibration.limits, calibration.mirror) == (source.limits, source.mirror)
    assert _unservable(tmp_path / "a.safetensors") is None
    with pytest.raises(ValueError, match="another run's checkpoint"):
        adapt(views, WEIGHTS, tmp_path / "b.safetensors", replace(TINY, lr=1e-3), progress=False)
    state = torch.load(ckpt, weights_only=False)
    del state["look"]["apex_logit"]  # as checkpoints written before the learned cone tip have it
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="cone tip"):
        adapt(views, WEIGHTS, tmp_path / "b.safetensors", TINY, progress=False)


def test_the_cli_adapts_a_folder_and_refuses_a_folder_without_images(folder, tmp_path, capsys):
    out = tmp_path / "mine.safetensors"
    assert main(["adapt", "--images", str(folder), "--out", str(out), "--steps", "1", "--batch", "2",
                 "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["weights"] == str(out) and summary["images"] == 6 and out.exists()
    assert main(["adapt", "--images", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "no images" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_device_this_machine_lacks_is_refused_with_a_clear_message(folder, tmp_path, capsys):
    for device, said in (("cuda", "CUDA is not available"), ("gpu", "gpu")):
        assert main(["adapt", "--images", str(folder), "--out", str(tmp_path / "x.safetensors"),
                     "--device", device]) == 2
        err = capsys.readouterr().err
        assert "--device" in err and said in err
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="no CUDA device"):
        adapt(load_views(image_files(folder), World()), WEIGHTS, tmp_path / "y.safetensors",
              replace(TINY, device="cuda"), progress=False)


def test_the_collapse_guard_fires_on_a_collapse_and_not_on_a_steady_run():
    rng = np.random.default_rng(0)
    steady, collapsing = CollapseGuard(10, 0.9), CollapseGuard(10, 0.9)
    for step in range(40):
        counts = rng.integers(0, 4, 8).tolist()
        assert steady.update(counts) is None
        reason = collapsing.update(counts if step < 15 else [0] * 8)
        if reason is not None:
            break
    assert reason is not None and "collapsed" in reason and "0 object(s)" in reason
    # a user whose every image holds two objects is not a collapse
    two = CollapseGuard(10, 0.9)
    assert all(two.update([2] * 8) is None for _ in range(40))


def test_a_forced_collapse_stops_the_run_with_a_clear_message(folder, tmp_path):
    _, world, _ = load_weights(WEIGHTS)
    views = load_views(image_files(folder), world)

    def force_off(step, model, stats):  # after step 3 the network never proposes an object
        if step == 3:
            with torch.no_grad():
                model.out_pres.bias.fill_(-40.0)

    cfg = replace(TINY, steps=12, collapse_window=3, sleep_weight=0.0, checkpoint_every=100)
    with pytest.raises(AdaptCollapse, match="count collapsed"):
        adapt(views, WEIGHTS, tmp_path / "c.safetensors", cfg, callback=force_off, progress=False)
    assert not (tmp_path / "c.safetensors").exists()


def test_adapted_weights_answer_like_the_network_they_came_from_after_zero_network_steps(folder, tmp_path):
    """With only the look learned (look_steps >= steps) the network is untouched: same answers."""
    model, world, _ = load_weights(WEIGHTS)
    views = load_views(image_files(folder), world)
    adapt(views, WEIGHTS, tmp_path / "d.safetensors", replace(TINY, steps=2, look_steps=5), progress=False)
    adapted, _, _ = load_weights(tmp_path / "d.safetensors")
    a = infer(model, views.pixels, world, views).objects
    b = infer(adapted, views.pixels, world, views).objects
    assert torch.equal(a.pres, b.pres) and torch.equal(a.shape, b.shape) and torch.allclose(a.position, b.position)


def test_the_weights_written_mix_back_the_start_and_a_finished_run_rewrites_another_mix(folder, tmp_path):
    """``keep`` 0 writes the network as adapted; resuming the finished run with keep 0.25 writes
    0.75 x that + 0.25 x the start, tensor by tensor, without another step; outside [0, 1] it
    is refused before any work, and the command line says so."""
    shipped, world, _ = load_weights(WEIGHTS)
    views = load_views(image_files(folder), world)
    out = tmp_path / "k.safetensors"
    adapt(views, WEIGHTS, out, replace(TINY, keep=0.0), progress=False)
    raw = load_weights(out)[0].state_dict()
    summary = adapt(views, WEIGHTS, out, replace(TINY, keep=0.25), progress=False)
    mixed = load_weights(out)[0].state_dict()
    assert summary["steps"] == TINY.steps and summary["config"]["keep"] == 0.25
    moved = [k for k, v in raw.items() if v.is_floating_point() and not torch.equal(v, shipped.state_dict()[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(mixed[k], 0.75 * raw[k] + 0.25 * shipped.state_dict()[k])
    with pytest.raises(ValueError, match="keep"):
        adapt(views, WEIGHTS, tmp_path / "x.safetensors", replace(TINY, keep=1.5), progress=False)
    assert not (tmp_path / "x.safetensors.ckpt.pt").exists()
    with pytest.raises(SystemExit):
        main(["adapt", "--images", str(folder), "--out", str(tmp_path / "y.safetensors"), "--keep", "nan"])


def test_the_learned_look_casts_each_objects_shadow_away_from_the_light():
    world = World().with_(image_size=64)
    from renderer.pinhole import canonical_cameras
    from renderer.scene import SceneBatch

    scene = SceneBatch(torch.tensor([[True, False, False]]), torch.tensor([[0, 0, 0]]), torch.tensor([[0, 0, 0]]),
                       torch.tensor([[[0.0, 0.0, world.shapes[0].resting_z]] * 3]), torch.zeros(1, 3))
    view = canonical_cameras(torch.tensor([[0.0, 0.0, 1.2]]) + 1e-3, 64, world.view_half_width)  # from straight above
    look = LearnedLook(world)

    def table_brightness(light: list[float]) -> tuple[float, float]:
        with torch.no_grad():
            look.light_dir.copy_(torch.tensor(light))
            img = look.render(scene, view, 0.0, 1).mean(-1)[0]
            empty = look.render(replace(scene, present=torch.zeros(1, 3, dtype=torch.bool)), view, 0.0, 1).mean(-1)[0]
        uv, _ = view.project(torch.tensor([[[0.09, 0.0, 0.0], [-0.09, 0.0, 0.0]]]))  # beside the cube, +x and -x
        (a, b) = [(int(v), int(u)) for u, v in uv[0].round().tolist()]
        return float(img[a] / empty[a]), float(img[b] / empty[b])

    plus_x, minus_x = table_brightness([1.0, 0.0, 0.8])  # the light on the +x side: the shadow falls to -x
    assert plus_x > 0.99 and minus_x < 0.9
    plus_x, minus_x = table_brightness([-1.0, 0.0, 0.8])
    assert minus_x > 0.99 and plus_x < 0.9


def test_the_step_timer_times_network_steps_after_the_warm_up(capsys):
    from bench import adapt_speed

    assert adapt_speed.main(["--device", "cpu", "--steps", "5", "--cpu-steps", "0", "--images", "4", "--batch", "2",
                             "--size", "64", "--threads", "1"]) == 0
    row = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("cpu")]
    assert len(row) == 1 and row[0][1] == "2"  # 5 steps, the first 3 (look-only and the first network step) untimed
    assert 0 < float(row[0][2]) < 60
    with pytest.raises(SystemExit):
        adapt_speed.main(["--steps", "3"])


def test_averaged_adaptation_writes_the_mean_of_its_last_steps_and_resumes_with_it(folder, tmp_path):
    """``average`` 2/3 of three steps writes the mean of the network after steps 2 and 3 (keep
    0); a run stopped after step 2 and resumed writes the same weights; a share outside [0, 1)
    is refused."""
    _, world, _ = load_weights(WEIGHTS)
    views = load_views(image_files(folder), world)
    cfg = replace(TINY, keep=0.0, average=2 / 3)
    seen = {}

    def record(step, model, stats):
        seen[step] = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    summary = adapt(views, WEIGHTS, tmp_path / "a.safetensors", cfg, callback=record, progress=False)
    written = load_weights(tmp_path / "a.safetensors")[0].state_dict()
    assert summary["averaged_steps"] == 2
    moved = [k for k in seen[3] if not torch.equal(seen[2][k], seen[3][k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(written[k], (seen[2][k] + seen[3][k]) / 2)
    adapt(views, WEIGHTS, tmp_path / "b.safetensors", replace(cfg, steps=2), progress=False)
    adapt(views, WEIGHTS, tmp_path / "b.safetensors", cfg, progress=False)
    resumed = load_weights(tmp_path / "b.safetensors")[0].state_dict()
    assert all(torch.equal(written[k], resumed[k]) for k in written)
    with pytest.raises(ValueError, match="average"):
        adapt(views, WEIGHTS, tmp_path / "x.safetensors", replace(TINY, average=1.0), progress=False)
    with pytest.raises(SystemExit):
        main(["adapt", "--images", str(folder), "--out", str(tmp_path / "y.safetensors"), "--average", "1"])
