"""Knowing when it is wrong: the generative fit, calibrated confidences, the in-world flag, and
how they reach the answer, the schema and the metrics."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from apiserver import LiveServer, settings_for, table_png
from PIL import Image

from app.engine import Engine
from bench.battery import battery
from inference.api import Predictor
from inference.calibration import Calibration, WorldLimits, joint_log_prob
from inference.fit import fit_answers, residual_png
from inference.metrics import expected_calibration_error
from renderer.appearance import default_look
from renderer.dataset import PhotoData, write_dataset
from renderer.photo import render_photo
from renderer.pinhole import spec_cameras
from training.calibrate import fit_temperature, world_limits
from training.calibrate import main as calibrate_main

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "air.safetensors"
SIZE = 80


def _fit(scene, world, shown=None):
    """Image fits of scenes rendered by the photo renderer (default look) and compared with ``scene``.
    shown: the world the image is rendered in (default: ``world``)."""
    cams = spec_cameras(world.camera, 1, SIZE, SIZE)
    g = torch.Generator().manual_seed(0)
    image = render_photo(scene, shown or world, cams, default_look(world, 1), g).permute(0, 3, 1, 2)
    return lambda answer: fit_answers(answer, image, torch.ones_like(image[:, :1]), cams, world)


def with_shape(scene, slot: int, shape: int, world):
    """``scene`` with slot ``slot`` turned into ``shape``, resting on the table."""
    shapes = scene.shape.clone()
    shapes[0, slot] = shape
    position = scene.position.clone()
    position[0, slot, 2] = world.shapes[shape].resting_z
    return replace(scene, shape=shapes, position=position)


SCENES = [
    [("cube", "red", 0.10, -0.08, 0.3), ("cylinder", "blue", -0.12, 0.10, 0.0)],
    [("box", "green", 0.0, 0.0, 0.5), ("cone", "yellow", 0.15, 0.15, 0.0), ("sphere", "purple", -0.15, -0.1, 0.0)],
    [("wedge", "cyan", -0.05, 0.12, 1.0)],
    [("sphere", "red", 0.12, 0.05, 0.0), ("box", "blue", -0.1, -0.12, 2.0)],
]


@pytest.mark.parametrize("objects", SCENES)
def test_fit_is_best_for_the_true_scene(world, make_scene, objects):
    truth = make_scene(*objects)
    fit = _fit(truth, world)
    best = fit(truth).image.item()
    moved = replace(truth, position=truth.position + torch.tensor([0.09, 0.0, 0.0]))
    removed = replace(truth, present=truth.present.clone().index_fill_(1, torch.tensor([0]), False))
    changed = with_shape(truth, 0, (int(truth.shape[0, 0]) + 3) % len(world.shapes), world)
    assert best > 0.5
    for name, worse in (("moved", moved), ("removed", removed), ("changed shape", changed)):
        assert fit(worse).image.item() < best, name


def test_removed_object_is_left_unexplained(world, make_scene):
    truth = make_scene(("cube", "red", 0.1, 0.1, 0.0), ("cone", "blue", -0.1, -0.1, 0.0))
    fit = _fit(truth, world)
    removed = replace(truth, present=torch.tensor([[True, False]]))
    assert fit(truth).unexplained.item() < 0.005 < fit(removed).unexplained.item()


def test_table_inside_a_drawn_silhouette_lowers_the_fill(world, make_scene):
    """A pole (4 cm square, 30 cm tall) answered as the world's box (19 x 9.5 x 9.5 cm): table
    shows inside the box drawn; the same answer on the box's own image is filled."""
    truth = make_scene(("box", "red", 0.05, 0.0, 0.3), ("sphere", "blue", -0.15, 0.12, 0.0))
    poles = replace(world, shapes=tuple(replace(s, size=(0.04, 0.04, 0.30)) if s.name == "box" else s
                                        for s in world.shapes))
    pole = replace(truth, position=truth.position.clone().index_put_((torch.tensor([0]), torch.tensor([0]),
                                                                      torch.tensor([2])), torch.tensor(0.15)))
    own = _fit(truth, world)(truth).fill.item()
    thin = _fit(pole, world, shown=poles)(truth).fill.item()
    assert own > 0.85 and thin < 0.6, (own, thin)


def test_the_table_edge_is_a_step_even_blurred_and_a_smooth_gradient_is_not(world, make_scene):
    """Our own render of a tabletop changes colour at the drawn table edge (step near 1); blurred
    by a 5 x 5 box it keeps about half of the change there; a smooth blend from black to white
    down the view, drawn with the same camera, changes a few bands further apart far more than
    across the edge."""
    from torch.nn import functional as F

    truth = make_scene(("cube", "red", 0.1, 0.1, 0.0))
    cams = spec_cameras(world.camera, 1, SIZE, SIZE)
    image = render_photo(truth, world, cams, default_look(world, 1), torch.Generator().manual_seed(0))
    image = image.permute(0, 3, 1, 2)
    blurred = F.conv2d(F.pad(image, (2, 2, 2, 2), mode="replicate"), torch.ones(3, 1, 5, 5) / 25, groups=3)
    ramp = torch.linspace(0, 1, SIZE)[None, None, :, None].expand(1, 3, SIZE, SIZE).contiguous()
    steps = {name: fit_answers(truth, img, torch.ones_like(img[:, :1]), cams, world).step.item()
             for name, img in (("sharp", image), ("blurred", blurred), ("ramp", ramp))}
    assert steps["sharp"] > 0.8 and steps["blurred"] > 0.4 and steps["ramp"] < 0.3, steps


def test_sensor_noise_and_exposure_leave_the_table_checks_alone(world, make_scene):
    """Pixel noise and a third of the exposure (a real camera in dim light) do not make the table
    look less like one surface or less unlike the floor; a shading ramp across the table does."""
    truth = make_scene(("cube", "red", 0.1, 0.1, 0.0), ("cone", "blue", -0.1, -0.1, 0.0))
    cams = spec_cameras(world.camera, 1, SIZE, SIZE)
    image = render_photo(truth, world, cams, default_look(world, 1), torch.Generator().manual_seed(0)).permute(0, 3, 1, 2)
    ramp = torch.linspace(-0.25, 0.25, SIZE)[None, None, None, :] * torch.tensor([1.0, -1.0, 0.0])[None, :, None, None]
    shown = {"clean": image, "noisy": (image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1),
             "dim": image / 3, "ramp": (image + ramp).clamp(0, 1)}
    fits = {k: fit_answers(truth, v, torch.ones_like(v[:, :1]), cams, world) for k, v in shown.items()}
    spread = {k: f.table_spread.item() for k, f in fits.items()}
    edge = {k: f.edge_contrast.item() for k, f in fits.items()}
    assert spread["noisy"] < spread["clean"] + 0.01 < spread["ramp"] - 0.02, spread
    assert 0.8 < edge["dim"] / edge["clean"] < 1.25 and 0.8 < edge["noisy"] / edge["clean"] < 1.25, edge


def test_vignetting_leaves_the_table_edge_where_it_is(world):
    """A lens darkening toward the corners (cos^4 of the angle off the axis) does not move the
    table's edge: the outline agreement stays, on a floor only a little darker than the table."""
    from renderer.prior import sample_scenes

    cams = spec_cameras(world.camera, 4, SIZE, SIZE)
    scene = sample_scenes(world, 4, seed=3, counts=[1, 2, 3])
    look = default_look(world, 4)
    look = replace(look, background_top=look.table_rgb * 0.92, background_bottom=look.table_rgb * 0.92)
    image = render_photo(scene, world, cams, look, torch.Generator().manual_seed(0)).permute(0, 3, 1, 2)
    centre = torch.arange(SIZE) + 0.5
    u = (centre - cams.principal[:, :1]) / cams.focal[:, :1]
    v = (centre - cams.principal[:, 1:]) / cams.focal[:, 1:]
    vignetted = image / (1 + u[:, None, :] ** 2 + v[:, :, None] ** 2)[:, None] ** 2
    clean, dark = (fit_answers(scene, im, torch.ones_like(im[:, :1]), cams, world).outline for im in (image, vignetted))
    assert (clean > 0.9).all() and (dark > clean - 0.05).all(), (clean, dark)


def test_residual_is_a_png():
    png = residual_png(torch.rand(3, 40, 40))
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(png))) as im:
        assert im.size == (160, 160) and im.mode == "RGB"


def test_expected_calibration_error_tells_honest_from_overconfident():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20000)
    honest = rng.random(20000) < conf
    assert expected_calibration_error(conf, honest) < 0.01
    assert expected_calibration_error(np.full(1000, 0.99), rng.random(1000) < 0.7) > 0.25


def test_temperature_fit_recovers_the_temperature_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 6, generator=g) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.0, -1), 1, generator=g)[:, 0]
    t = fit_temperature(lambda t: float(torch.nn.functional.cross_entropy(logits / t, labels)))
    assert 1.85 < t < 2.15


def test_joint_probability_counts_objects_and_the_stop():
    conf = torch.tensor([[0.9, 0.8, 0.1]])
    present = torch.tensor([[True, True, False]])
    lp = joint_log_prob(conf, torch.ones(1, 3), torch.ones(1, 3), present)
    assert math.isclose(lp.item(), math.log(0.9 * 0.8 * 0.9), rel_tol=1e-4)


def test_shipped_weights_carry_their_calibration():
    meta = json.loads(WEIGHTS.with_suffix(".json").read_text())["meta"]
    cal = Calibration.from_meta(meta)
    assert cal.fitted and cal.limits != WorldLimits()
    assert all(0.05 < t < 20 for t in (cal.temperature.presence, cal.temperature.shape, cal.temperature.color))
    fitted = meta["calibration"]["fitted_on"]
    assert fitted["data"].endswith("photo-val") and all(v <= 0.03 for v in fitted["ece_after"].values())


def test_calibration_is_fitted_on_validation_data_and_stored_with_the_weights(tmp_path):
    data = tmp_path / "val"
    write_dataset(data, 48, 7, Predictor.load(WEIGHTS).world, chunk=16, progress=False, photo=PhotoData())
    weights = tmp_path / "air.safetensors"
    shutil.copy(WEIGHTS, weights)
    doc = json.loads(WEIGHTS.with_suffix(".json").read_text())
    doc["meta"].pop("calibration", None)
    weights.with_suffix(".json").write_text(json.dumps(doc))
    assert not Predictor.load(weights).calibration.fitted
    assert calibrate_main(["--weights", str(weights), "--data", str(data), "--scenes", "48"]) == 0
    cal = Predictor.load(weights).calibration
    assert cal.fitted and cal.limits.max_spread > 0 and cal.mirror  # a view network reads with its mirror
    stored = json.loads(weights.with_suffix(".json").read_text())["meta"]["calibration"]["fitted_on"]
    assert stored["scenes"] == 48 and set(stored["ece_after"]) == {"presence", "shape", "color"}
    assert calibrate_main(["--weights", str(weights), "--data", str(data), "--scenes", "48", "--no-mirror"]) == 0
    assert not Predictor.load(weights).calibration.mirror


def test_a_deployment_can_turn_the_mirror_reading_off():
    assert Engine.load(WEIGHTS, "cpu").predictor.calibration.mirror  # the shipped weights read with it
    assert not Engine.load(WEIGHTS, "cpu", mirror=False).predictor.calibration.mirror
    assert Engine.load(WEIGHTS, "cpu", mirror=False).predictor.calibration.fitted


def _labelled_folder(out: Path, world, scenes: int, seed: int, shapes_shifted: bool) -> None:
    """A labelled image folder (``bench.crossrender``'s layout) of our own photos; with
    ``shapes_shifted`` every label names the next shape of the world instead of the true one."""
    from inference.evaluate import held_out_photos
    from renderer.camera import camera_dict

    (out / "images").mkdir(parents=True)
    entries = []
    for images, truth in held_out_photos(world, scenes, seed):
        u8 = (images.pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, a in enumerate(u8):
            file = f"images/{len(entries):04d}.png"
            Image.fromarray(a).save(out / file)
            objects = [{"shape": world.shapes[(int(truth.shape[i, t]) + shapes_shifted) % len(world.shapes)].name,
                        "color": world.color_names[int(truth.color[i, t])],
                        "position": dict(zip("xyz", map(float, truth.position[i, t]))),
                        "yaw_deg": math.degrees(float(truth.yaw[i, t]))}
                       for t in range(truth.num_slots) if truth.present[i, t]]
            entries.append({"file": file, "camera": camera_dict(images.cameras.select(slice(i, i + 1))),
                            "objects": objects})
    (out / "labels.json").write_text(json.dumps({"images": entries}))


def test_labelled_sets_count_as_much_as_the_validation_set(tmp_path):
    """``--labelled``: another set's images enter the temperatures with the validation set's
    weight: labels whose shapes are all wrong make the fitted shape temperature far hotter, and
    the report names the set."""
    world = Predictor.load(WEIGHTS).world
    data = tmp_path / "val"
    write_dataset(data, 32, 7, world, chunk=16, progress=False, photo=PhotoData())
    _labelled_folder(tmp_path / "wrong", world, 16, 8, shapes_shifted=True)
    temps = {}
    for name, extra in (("alone", []), ("wrong", ["--labelled", str(tmp_path / "wrong")])):
        weights = tmp_path / name / "air.safetensors"
        weights.parent.mkdir(exist_ok=True)
        shutil.copy(WEIGHTS, weights)
        shutil.copy(WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
        assert calibrate_main(["--weights", str(weights), "--data", str(data), "--scenes", "32", *extra]) == 0
        fitted = json.loads(weights.with_suffix(".json").read_text())["meta"]["calibration"]
        temps[name] = fitted["temperature"]["shape"]
    assert fitted["fitted_on"]["others"][str(tmp_path / "wrong")]["scenes"] == 16
    assert fitted["fitted_on"]["others"][str(tmp_path / "wrong")]["answers_right"] < 0.5  # only empty scenes
    assert temps["wrong"] > 2 * temps["alone"]


def test_world_limits_pool_every_validation_set():
    """The limits are quantiles over the images of all the sets given, pooled: a second set whose
    spill, fill and step run further widens those bounds, and each bound keeps the share asked."""
    rng = torch.Generator().manual_seed(0)

    def fits(n, spill_top, fill_low, step_low):
        u = torch.rand(n, generator=rng)
        return SimpleNamespace(image=u, unexplained=0.01 * u, spill=spill_top * u, table_spread=0.02 * u,
                               outline=1 - 0.3 * u, edge_contrast=0.1 + u, fill=1 - (1 - fill_low) * u,
                               step=1 - (1 - step_low) * u)

    own, other = fits(1000, 0.1, 0.7, 0.8), fits(1000, 0.3, 0.4, 0.5)
    alone, pooled = world_limits([own], 0.99), world_limits([own, other], 0.99)
    assert alone.max_spill < 0.1 < pooled.max_spill < 0.3
    assert 0.4 < pooled.min_fill < 0.7 < alone.min_fill
    assert 0.5 < pooled.min_step < 0.8 < alone.min_step
    kept = [(torch.cat([f.spill for f in (own, other)]) <= pooled.max_spill).float().mean(),
            (torch.cat([f.fill for f in (own, other)]) >= pooled.min_fill).float().mean(),
            (torch.cat([f.step for f in (own, other)]) >= pooled.min_step).float().mean()]
    assert all(abs(float(k) - 0.99) < 0.002 for k in kept)


def test_the_detector_bound_keeps_its_own_share_of_each_set():
    """The out-of-set detector's bound is the largest of each set's ``foreign_keep`` quantile,
    not the pooled ``keep`` one: a set whose scores run higher sets it, and a larger
    ``foreign_keep`` raises it while the other checks' bounds stay."""
    rng = torch.Generator().manual_seed(1)

    def fits(n, top):
        u = torch.rand(n, generator=rng)
        return SimpleNamespace(image=u, unexplained=0.01 * u, spill=0.1 * u, table_spread=0.02 * u, outline=1 - 0.3 * u,
                               edge_contrast=0.1 + u, fill=1 - 0.3 * u, step=1 - 0.2 * u, foreign=top * u)

    low, high = fits(2000, 0.5), fits(500, 0.9)
    both = [low, high]
    strict, loose = world_limits(both, 0.99, [[low], [high]], 0.99), world_limits(both, 0.99, [[low], [high]], 0.999)
    assert abs(strict.max_foreign - float(torch.quantile(high.foreign, 0.99))) < 1e-4
    assert abs(loose.max_foreign - float(torch.quantile(high.foreign, 0.999))) < 1e-4
    assert strict.max_foreign < loose.max_foreign <= 0.9
    assert replace(strict, max_foreign=0.0) == replace(loose, max_foreign=0.0)
    assert float((high.foreign <= loose.max_foreign).float().mean()) >= 0.998


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(WEIGHTS)


def test_flag_fires_on_blank_noise_and_foreign_images(predictor):
    images = battery(predictor.world, seed=5, per_kind=3)
    blank_noise = [im for kind, im in images if kind in ("blank", "noise")]
    answers = [predictor.infer(im) for im in blank_noise]
    assert all(not a["quality"]["in_world"] for a in answers)
    flagged = [not predictor.infer(im)["quality"]["in_world"] for _, im in images]
    assert np.mean(flagged) >= 0.6


def test_flag_fires_when_the_view_does_not_match_the_camera(predictor):
    """Our own scenes, cropped and enlarged or turned, sent as if whole from the world's camera:
    the table's edge is not where that camera puts it, so the outline (or another check) flags
    most of them (a wrong camera stated looks the same)."""
    world = predictor.world
    from renderer.prior import sample_scenes

    scene = sample_scenes(world, 4, seed=21, counts=[1, 2, 3])
    cams = spec_cameras(world.camera, 4, 240, 320)
    img = render_photo(scene, world, cams, default_look(world, 4), torch.Generator().manual_seed(2))
    whole = [Image.fromarray(f) for f in (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()]
    shown = [im.crop((40, 30, 280, 210)).resize(im.size, Image.Resampling.BICUBIC) for im in whole]
    shown += [im.rotate(90, expand=True) for im in whole]
    assert sum(a["quality"]["in_world"] for a in predictor.infer(whole)) >= 3
    assert sum(not a["quality"]["in_world"] for a in predictor.infer(shown)) >= 7  # 6 of 8 at the earlier 40x40


def test_in_world_images_pass_and_answers_carry_fit_and_trust(predictor):
    world = predictor.world
    from renderer.prior import sample_scenes

    scene = sample_scenes(world, 6, seed=11, counts=[1, 2, 3])
    cams = spec_cameras(world.camera, 6, 240, 320)
    g = torch.Generator().manual_seed(1)
    img = render_photo(scene, world, cams, default_look(world, 6), g)
    frames = list((img.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    answers = predictor.infer(frames)
    assert sum(a["quality"]["in_world"] for a in answers) >= 5
    for a in answers:
        q = a["quality"]
        assert 0 <= q["fit"] <= 1 and 0 <= q["trust"] <= 1 and a["model"]["calibrated"]
        assert all(0 <= o["fit"] <= 1 for o in a["objects"])
    assert np.mean([a["quality"]["trust"] for a in answers]) > 0.5


@pytest.fixture(scope="module")
def served():
    with LiveServer(settings_for(WEIGHTS)) as s:
        yield s


def test_answer_quality_is_in_the_schema_and_the_metrics(served):
    import httpx

    with httpx.Client(base_url=served.url, timeout=30) as c:
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert {"fit", "trust", "in_world", "residual_png", "foreign"} <= set(schema["Quality"]["properties"])
        assert "fit" in schema["DetectedObject"]["properties"]
        r = c.post("/infer?residual=true", content=table_png(), headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        q = r.json()["quality"]
        assert q["residual_png"] and isinstance(q["in_world"], bool)
        plain = c.post("/infer", content=table_png(), headers={"content-type": "image/png"}).json()["quality"]
        assert plain["residual_png"] is None
        blank = Image.new("RGB", (320, 240), (128, 128, 128))
        import io

        buf = io.BytesIO()
        blank.save(buf, format="PNG")
        assert not c.post("/infer", content=buf.getvalue(), headers={"content-type": "image/png"}).json()[
            "quality"]["in_world"]
        metrics = c.get("/metrics").text
        assert 'airscene_infer_answers_total{fit_band="' in metrics
        assert 'in_world="false"' in metrics


def test_ray_casting_draws_what_the_rasteriser_draws():
    from inference.views import view_cameras
    from renderer.pinhole import sample_cameras
    from renderer.prior import sample_scenes
    from renderer.raycast import region_map
    from renderer.render import RasterSettings, SceneRasterizer, pack_scene

    world = Predictor.load(WEIGHTS).world
    g = torch.Generator().manual_seed(2)
    cams = sample_cameras(world.envelope, 24, g, 240, 320)
    view = view_cameras(cams, world).resized(40, 40)
    scene = sample_scenes(world, 24, generator=g, cameras=(cams,))
    packed = pack_scene(scene, world)
    p2f = SceneRasterizer(world, RasterSettings(40, 40))(packed.meshes, view).pix_to_face[..., 0]
    slot = packed.slot[p2f.clamp_min(0)]
    raster = torch.where(p2f >= 0, slot, torch.full_like(slot, scene.num_slots + 1))
    cast = region_map(scene, world, view)
    assert (cast == raster).float().mean() > 0.995  # spheres are cast smooth, the rasteriser draws facets
    assert (cast < scene.num_slots).any() and (cast == scene.num_slots).any()


def test_ray_casting_culls_no_hit(monkeypatch):
    """Rays are cast only within each object's bounding sphere: tripling every radius (so
    nearly every ray is cast) changes no pixel, and a sphere too small does."""
    from inference.views import view_cameras
    from renderer import raycast
    from renderer.pinhole import sample_cameras
    from renderer.prior import sample_scenes

    world = Predictor.load(WEIGHTS).world
    g = torch.Generator().manual_seed(3)
    cams = sample_cameras(world.envelope, 16, g, 240, 320)
    view = view_cameras(cams, world).resized(40, 40)
    scene = sample_scenes(world, 16, generator=g, cameras=(cams,))
    culled = raycast.region_map(scene, world, view)
    radii = raycast.bounding_radii(world)
    monkeypatch.setattr(raycast, "bounding_radii", lambda w: radii * 3)
    assert torch.equal(raycast.region_map(scene, world, view), culled)
    monkeypatch.setattr(raycast, "bounding_radii", lambda w: radii * 0.5)
    assert not torch.equal(raycast.region_map(scene, world, view), culled)


def test_a_camera_seen_before_draws_from_its_kept_table_cast_and_a_moved_one_does_not():
    """``TABLE_VIEWS`` keeps single cameras' table casts: the same camera again gets the very
    cast kept (and the same regions as a fresh cast), a camera moved by a millimetre or
    resized gets its own, the oldest goes when the store is full, and batches are not kept."""
    from inference.fit import TableViews
    from inference.views import view_cameras
    from renderer.pinhole import sample_cameras
    from renderer.prior import sample_scenes
    from renderer.raycast import region_map, table_view

    world = Predictor.load(WEIGHTS).world
    g = torch.Generator().manual_seed(4)
    cams = sample_cameras(world.envelope, 3, g, 240, 320)
    view = view_cameras(cams, world).resized(40, 40)
    scene = sample_scenes(world, 3, generator=g, cameras=(cams,))
    views = TableViews(size=2)
    one = view.select(slice(0, 1))
    kept = views(world, one)
    assert views(world, one) is kept
    assert torch.equal(region_map(scene.select(slice(0, 1)), world, one, kept),
                       region_map(scene.select(slice(0, 1)), world, one))
    moved = replace(one, position=one.position + torch.tensor([0.001, 0.0, 0.0]))
    assert views(world, moved) is not kept
    larger = views(world, one.resized(80, 80))
    assert larger is not kept and larger.table.shape == (1, 80 * 80)
    assert views(world, one.resized(80, 80)) is larger
    assert views(world, one) is not kept  # two others came after it: the store of 2 let it go
    assert views(world, view) is not views(world, view)  # a batch of three is cast each time
    assert torch.equal(views(world, view).table, table_view(world, view).table)


def test_the_table_edge_bands_are_kept_per_camera_and_coverage():
    """``TABLE_VIEWS.edges`` keeps the outline's bands for a camera and the part of the view its
    image covers: the same pair again gets the very bands kept, a coverage cut back gets its
    own, and the bands lie on the sides they name, the inner ones nearer the edge than the far."""
    from inference.fit import TableViews, edge_bands
    from inference.views import view_cameras
    from renderer.pinhole import sample_cameras
    from renderer.raycast import table_mask

    world = Predictor.load(WEIGHTS).world
    cams = view_cameras(sample_cameras(world.envelope, 1, torch.Generator().manual_seed(7), 240, 320), world)
    cams = cams.resized(80, 80)
    views = TableViews(size=4)
    whole = torch.ones(1, 1, 80, 80)
    kept = views.edges(world, cams, whole)
    assert views.edges(world, cams, whole) is kept
    on_table = table_mask(world, cams)
    for got, want in zip(kept, edge_bands(on_table, ~on_table)):
        assert torch.equal(got, want)
    assert kept.inner.any() and kept.outer.any() and kept.far_inner.any() and kept.far_outer.any()
    assert not (kept.inner & ~on_table).any() and not (kept.far_inner & ~on_table).any()
    assert not (kept.outer & on_table).any() and not (kept.far_outer & on_table).any()
    assert not (kept.inner & kept.far_inner).any() and not (kept.outer & kept.far_outer).any()
    cut = whole.clone()
    cut[..., :, 40:] = 0
    half = views.edges(world, cams, cut)
    assert half is not kept and not half.table[..., 40:].any() and not half.outer[..., 40:].any()


@pytest.mark.parametrize("shape", [(2, 40, 40), (2, 3, 40, 40), (1, 3, 7, 9)])
def test_dilation_grows_masks_as_a_max_filter_does(shape):
    from torch.nn import functional as F

    from inference.fit import dilate

    masks = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape))) > 0.93
    for radius in (1, 2, 3, 4, 5, 9):  # beyond 3 by doubling steps
        flat = masks.reshape(-1, 1, *shape[-2:]).float()
        want = (F.max_pool2d(flat, 2 * radius + 1, 1, radius) > 0).reshape(shape)
        assert torch.equal(dilate(masks, radius), want)
    one = torch.zeros(1, 9, 9, dtype=torch.bool)
    one[0, 0, 4] = True
    assert int(dilate(one, 2).sum()) == 3 * 5  # clipped at the top edge
