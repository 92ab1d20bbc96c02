"""The world as a distribution: cameras from the envelope, looks from the look prior, photo
renders and photo datasets, the canonical view and the way back to the table."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from inference.views import (prefilter_factor, shrunk_camera, to_table, to_view, view_cameras, warp_plan,
                             warp_to_view, wrap)
from renderer.appearance import LookPrior, default_look, kelvin_rgb, rgb_to_hsv, sample_looks, shade_palette
from renderer.dataset import PhotoData, SceneDataset, write_dataset
from renderer.photo import cast_shadow, render_photo
from renderer.pinhole import (
    Cameras, canonical_cameras, envelope_violations, homography, look_at_cameras, sample_cameras, spec_cameras,
    warp_images,
)
from renderer.meshes import corner_normals, mesh_library, primitive, welded_normals
from renderer.prior import in_view, sample_scenes
from renderer.render import RasterSettings, SceneRasterizer, pack_scene
from renderer.raycast import region_map
from renderer.scene import SceneBatch
from renderer.world import CameraEnvelope, World

WORLD = World().with_(image_size=48)


def one_object(shape: str = "cube", xy=(0.0, 0.0), yaw: float = 0.0) -> SceneBatch:
    k = WORLD.shape_index(shape)
    z = WORLD.shapes[k].resting_z
    return SceneBatch(torch.tensor([[True, False, False]]), torch.tensor([[k, 0, 0]]), torch.tensor([[0, 0, 0]]),
                      torch.tensor([[[xy[0], xy[1], z], [0, 0, 0], [0, 0, 0]]]), torch.tensor([[yaw, 0.0, 0.0]]))


def test_sampled_cameras_lie_in_the_envelope_without_margin():
    cams = sample_cameras(WORLD.envelope, 200, torch.Generator().manual_seed(0), 48, 64, margin=False)
    assert envelope_violations(cams, WORLD.envelope) == [""] * 200
    d = cams.describe()
    env = WORLD.envelope
    assert env.elevation_deg[0] <= float(d["elevation_deg"].min()) and float(d["elevation_deg"].max()) <= env.elevation_deg[1]
    assert float(d["look_at_radius"].max()) <= env.look_at_radius + 1e-5


def test_sampled_cameras_are_seeded():
    a = sample_cameras(WORLD.envelope, 10, torch.Generator().manual_seed(4), 48, 48)
    b = sample_cameras(WORLD.envelope, 10, torch.Generator().manual_seed(4), 48, 48)
    assert torch.equal(a.position, b.position) and torch.equal(a.rotation, b.rotation)


@pytest.mark.parametrize("field,eye,fov", [
    ("elevation_deg", (-1.0, 0.0, 0.25), 45.0),  # about 14 degrees: too flat
    ("distance", (-2.0, 0.0, 2.5), 45.0),
    ("fov_deg", (-0.6, 0.0, 0.9), 90.0),
])
def test_camera_outside_the_envelope_is_named(field, eye, fov):
    cams = look_at_cameras(torch.tensor([eye]), torch.zeros(1, 3), torch.tensor([fov]), 48, 48)
    (msg,) = envelope_violations(cams, WORLD.envelope)
    assert field in msg


def test_look_at_cameras_report_their_roll():
    cams = look_at_cameras(torch.tensor([[0.5, 0.7, 0.9]]), torch.zeros(1, 3), torch.tensor([50.0]), 48, 64,
                           torch.tensor([10.0]))
    assert float(cams.describe()["roll_deg"][0]) == pytest.approx(10.0, abs=1e-3)


def test_lift_inverts_project():
    cams = sample_cameras(WORLD.envelope, 8, torch.Generator().manual_seed(1), 48, 64)
    pts = torch.rand(8, 5, 3) * torch.tensor([0.5, 0.5, 0.15]) - torch.tensor([0.25, 0.25, 0.0])
    uv, _ = cams.project(pts)
    assert torch.allclose(cams.lift(uv, pts[..., 2]), pts, atol=1e-5)


def test_rasteriser_agrees_with_the_pinhole_projection_on_a_non_square_image():
    cams = look_at_cameras(torch.tensor([[0.5, 0.7, 0.9]]), torch.zeros(1, 3), torch.tensor([50.0]), 90, 160,
                           torch.tensor([10.0]))
    scene = one_object("sphere", (0.1, 0.05))
    packed = pack_scene(scene, WORLD)
    p2f = SceneRasterizer(WORLD, RasterSettings(90, 160))(packed.meshes, cams).pix_to_face[0, ..., 0]
    rows, cols = torch.nonzero((p2f >= 0) & (packed.slot[p2f.clamp_min(0)] == 0), as_tuple=True)
    uv, _ = cams.project(scene.position[:, :1])
    assert float(cols.float().mean() + 0.5) == pytest.approx(float(uv[0, 0, 0]), abs=0.5)
    assert float(rows.float().mean() + 0.5) == pytest.approx(float(uv[0, 0, 1]), abs=0.5)


def test_turn_homography_maps_projections_exactly():
    cams = sample_cameras(WORLD.envelope, 4, torch.Generator().manual_seed(2), 48, 64)
    view = canonical_cameras(cams.position, 48, 0.45)
    pts = torch.rand(4, 6, 3) * 0.3
    src, _ = cams.project(pts)
    dst, _ = view.project(pts)
    q = torch.cat([dst, torch.ones(4, 6, 1)], -1) @ homography(cams, view).transpose(1, 2)
    assert torch.allclose(q[..., :2] / q[..., 2:], src, atol=1e-3)


def test_warped_camera_image_matches_the_view_rendered_directly():
    g = torch.Generator().manual_seed(3)
    cams = sample_cameras(WORLD.envelope, 2, g, 120, 160)
    view = view_cameras(cams, WORLD)
    scene = sample_scenes(WORLD, 2, generator=g, counts=2, cameras=(cams, view))
    look = default_look(WORLD, 2)
    photo = render_photo(scene, WORLD, cams, look, g)
    direct = render_photo(scene, WORLD, view, look, g)
    for i in range(2):
        v = warp_to_view(photo[i].permute(2, 0, 1), cams.select(slice(i, i + 1)), WORLD)
        seen = v.coverage[0, 0] > 0
        assert seen.float().mean() > 0.5
        assert float((v.pixels[0].permute(1, 2, 0) - direct[i]).abs()[seen].mean()) < 0.02


def test_a_cameras_warp_is_remembered_and_gives_what_a_fresh_warp_gives():
    g = torch.Generator().manual_seed(8)
    cams = sample_cameras(WORLD.envelope, 3, g, 480, 640)  # 480 x 640: box-filtered before the warp
    images = torch.rand(3, 3, 480, 640, generator=g)
    for i in range(3):
        cam = cams.select(slice(i, i + 1))
        view = view_cameras(cam, WORLD)
        factor = prefilter_factor(cam, view)
        src = F.avg_pool2d(images[i : i + 1], factor)
        fresh, inside = warp_images(src, shrunk_camera(cam, factor, 480 // factor, 640 // factor), view)
        first = warp_to_view(images[i], cam, WORLD)
        assert warp_plan(cam, WORLD) is warp_plan(cam, WORLD)  # computed once
        first.coverage.zero_()  # what a caller does to its answer must not reach the next one
        again = warp_to_view(images[i], cam, WORLD)
        assert factor > 1 and torch.allclose(again.pixels, fresh, atol=1e-6)
        assert torch.equal(again.pixels, first.pixels) and torch.equal(again.coverage[:, 0], inside.float())
    moved = Cameras(cams.position[:1] + 0.01, cams.rotation[:1], cams.focal[:1], cams.principal[:1], 480, 640)
    assert warp_plan(moved, WORLD) is not warp_plan(cams.select(slice(0, 1)), WORLD)
    with pytest.raises(ValueError, match="its camera is"):
        warp_to_view(images[0, :, :240], cams.select(slice(0, 1)), WORLD)


def test_view_answers_lift_back_to_the_table():
    g = torch.Generator().manual_seed(5)
    cams = sample_cameras(WORLD.envelope, 6, g, 48, 64)
    view = view_cameras(cams, WORLD)
    scene = sample_scenes(WORLD, 6, generator=g, counts=3, cameras=(cams, view))
    centre, yaw = to_view(scene, view)
    position, back = to_table(centre, yaw, scene.shape, view, WORLD)
    assert torch.allclose(position, scene.position, atol=1e-4)
    assert float(wrap(back - scene.yaw).abs().max()) < 1e-4


def test_prior_keeps_objects_in_view_of_its_cameras():
    g = torch.Generator().manual_seed(6)
    cams = sample_cameras(WORLD.envelope, 300, g, 48, 64)
    scene = sample_scenes(WORLD, 300, generator=g, counts=3, cameras=(cams,))
    radius = mesh_library(WORLD).footprint_radius[scene.shape]
    seen = in_view(scene.position[..., :2], scene.position[..., 2], radius, cams)
    assert bool((seen | ~scene.present).all())
    assert float(scene.count.float().mean()) > 2.8  # few objects find no place in view


def test_sampled_looks_honour_their_ranges_and_seed():
    prior = LookPrior()
    a = sample_looks(prior, 400, torch.Generator().manual_seed(7))
    b = sample_looks(prior, 400, torch.Generator().manual_seed(7))
    assert all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    for name in ("specular", "shininess", "gain", "gamma", "noise_std", "blur_px", "shadow_strength"):
        lo, hi = getattr(prior, name)
        v = getattr(a, name)
        assert lo <= float(v.min()) and float(v.max()) <= hi, name
    key_elevation = torch.rad2deg(torch.asin(a.light_dir[:, 0, 2]))
    assert prior.key_elevation_deg[0] - 1e-3 <= float(key_elevation.min())
    assert float(key_elevation.max()) <= prior.key_elevation_deg[1] + 1e-3
    jpeg = a.jpeg_quality[a.jpeg_quality > 0]
    assert prior.jpeg_quality[0] <= int(jpeg.min()) and int(jpeg.max()) <= prior.jpeg_quality[1]
    assert 0.3 < float((a.jpeg_quality > 0).float().mean()) < 0.7


def test_shades_keep_each_colour_recognisable():
    scene = sample_scenes(WORLD, 500, seed=8, counts=3)
    shades = shade_palette(scene, WORLD, LookPrior(), torch.Generator().manual_seed(8))
    base = torch.tensor([c.rgb for c in WORLD.colors])
    hue = rgb_to_hsv(shades)[..., 0] * 360
    base_hue = rgb_to_hsv(base)[scene.color][..., 0] * 360
    shift = torch.remainder(hue - base_hue + 180, 360) - 180
    assert float(shift.abs().max()) <= 10.0 + 1e-3


def test_colour_temperature_runs_from_warm_to_cool():
    warm, cool = kelvin_rgb(torch.tensor([3000.0, 7500.0]))
    assert warm[0] > warm[2] and cool[2] > cool[0]


def test_contact_shadow_falls_away_from_the_light():
    g = torch.Generator().manual_seed(9)
    look = default_look(WORLD, 1)
    light = torch.tensor([0.6, 0.0, 0.8])  # from +x, 53 degrees up
    look = replace(look, light_dir=light.expand(1, 1, 3).clone(), shadow_strength=torch.tensor([0.6]))
    top = look_at_cameras(torch.tensor([[0.0, 0.0, 1.2]]) + torch.tensor([[1e-3, 0.0, 0.0]]), torch.zeros(1, 3),
                          torch.tensor([40.0]), 64, 64)
    scene = one_object("cylinder")
    img = render_photo(scene, WORLD, top, look, g).mean(-1)[0]
    lit = render_photo(scene, WORLD, top, replace(look, shadow_strength=torch.tensor([0.0])), g).mean(-1)[0]
    dark = lit - img  # how much the shadow took, per pixel
    uv, _ = top.project(torch.tensor([[[-0.13, 0.0, 0.0], [0.13, 0.0, 0.0]]]))
    (ua, va), (ub, vb) = uv[0].round().long().tolist()
    assert float(dark[va, ua]) > 0.05  # the side away from the light (-x) is darkened
    assert float(dark[va, ua]) > 3 * float(dark[vb, ub])


def _key_light(elevation_deg: float, radius_deg: float = 0.0):
    """The default look with its key light from +x at ``elevation_deg`` casting ray-traced shadows."""
    el = math.radians(elevation_deg)
    return replace(default_look(WORLD, 1), light_dir=torch.tensor([[[math.cos(el), 0.0, math.sin(el)]]]),
                   cast_shadow=torch.tensor([True]), light_radius_deg=torch.tensor([radius_deg]))


def test_cast_shadows_fall_away_from_the_light_and_lengthen_as_it_sinks():
    scene = one_object("cube")  # 13 cm, at the table centre
    along = torch.tensor([-0.10, -0.20, -0.30, 0.10])  # table points on the light's axis; the last toward it
    points = torch.stack([along, torch.zeros(4), torch.zeros(4)], -1).reshape(1, 1, 4, 3)
    high, low = (cast_shadow(points, scene, WORLD, _key_light(el))[0, 0] for el in (60.0, 20.0))
    # the cube's shadow reaches 6.5 + 13 / tan(elevation) cm from its centre: 14 cm at 60, 42 cm at 20
    assert high.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert low.tolist() == [1.0, 1.0, 1.0, 0.0]


def test_a_wide_light_softens_the_shadows_edge_and_the_renderer_draws_it():
    g = torch.Generator().manual_seed(11)
    scene = one_object("cylinder")
    top = look_at_cameras(torch.tensor([[1e-3, 0.0, 1.2]]), torch.zeros(1, 3), torch.tensor([40.0]), 64, 64)
    x = torch.linspace(-0.35, -0.05, 61)
    points = torch.stack([x, torch.zeros(61), torch.zeros(61)], -1).reshape(1, 1, 61, 3)
    sharp = cast_shadow(points, scene, WORLD, _key_light(40.0))[0, 0]
    soft = cast_shadow(points, scene, WORLD, _key_light(40.0, 6.0))[0, 0]
    assert set(sharp.unique().tolist()) == {0.0, 1.0}
    assert ((soft > 0) & (soft < 1)).sum() >= 3  # a penumbra between full shadow and full light
    lit = render_photo(scene, WORLD, top, replace(_key_light(40.0), cast_shadow=torch.tensor([False])), g)
    shaded = render_photo(scene, WORLD, top, _key_light(40.0), g)
    uv, _ = top.project(torch.tensor([[[-0.18, 0.0, 0.0], [0.18, 0.0, 0.0]]]))
    (ua, va), (ub, vb) = uv[0].round().long().tolist()
    dark = (lit - shaded).mean(-1)[0]
    assert float(dark[va, ua]) > 0.1 and abs(float(dark[vb, ub])) < 1e-6


def test_cast_shadows_are_drawn_last_so_older_seeds_keep_their_looks():
    old = sample_looks(LookPrior(), 50, torch.Generator().manual_seed(3))
    new = sample_looks(LookPrior(cast_shadow_probability=0.5), 50, torch.Generator().manual_seed(3))
    for f in fields(old):
        if f.name not in ("cast_shadow", "light_radius_deg"):
            assert torch.equal(getattr(old, f.name), getattr(new, f.name)), f.name
    assert not old.cast_shadow.any() and 10 < int(new.cast_shadow.sum()) < 40
    lo, hi = LookPrior().light_radius_deg
    assert lo <= float(new.light_radius_deg.min()) and float(new.light_radius_deg.max()) <= hi
    assert "cast_shadow_probability" not in PhotoData().to_dict()["look"]


def test_harsh_sensor_draws_come_last_and_reach_dim_bright_and_noisy_images():
    prior = LookPrior(cast_shadow_probability=0.5)
    old = sample_looks(prior, 400, torch.Generator().manual_seed(4))
    new = sample_looks(replace(prior, harsh_probability=0.5), 400, torch.Generator().manual_seed(4))
    changed = (new.gain != old.gain) | (new.noise_std != old.noise_std)
    for f in fields(old):
        if f.name not in ("gain", "noise_std"):
            assert torch.equal(getattr(old, f.name), getattr(new, f.name)), f.name
    assert 150 < int(changed.sum()) < 250
    factor = new.gain[changed] / old.gain[changed]
    lo, hi = prior.harsh_gain
    assert lo <= float(factor.min()) < 0.4 and 1.6 < float(factor.max()) <= hi  # dim and overexposed both drawn
    lo, hi = prior.harsh_noise_std
    assert lo <= float(new.noise_std[changed].min()) and float(new.noise_std[changed].max()) <= hi
    assert float(new.noise_std[changed].mean()) > 2 * float(old.noise_std.mean())
    assert "harsh_probability" not in PhotoData().to_dict()["look"]
    assert PhotoData(replace(prior, harsh_probability=0.3)).to_dict()["look"]["harsh_probability"] == 0.3


def test_camera_colour_draws_come_last_and_reach_warm_cool_washed_out_and_glare():
    prior = LookPrior(cast_shadow_probability=0.5, harsh_probability=0.3)
    old = sample_looks(prior, 400, torch.Generator().manual_seed(5))
    new = sample_looks(replace(prior, colour_probability=0.5), 400, torch.Generator().manual_seed(5))
    moved = ("white_balance", "gamma", "saturation", "glare")
    for f in fields(old):
        if f.name not in moved:
            assert torch.equal(getattr(old, f.name), getattr(new, f.name)), f.name
    assert bool((old.saturation == 1).all()) and bool((old.glare == 0).all())
    off = new.glare != old.glare
    assert 150 < int(off.sum()) < 250
    assert torch.equal(new.white_balance[~off], old.white_balance[~off]) and torch.equal(new.gamma[~off], old.gamma[~off])
    red_over_blue = (new.white_balance[off, 0] / new.white_balance[off, 2]) / (old.white_balance[off, 0] / old.white_balance[off, 2])
    assert float(red_over_blue.min()) < 0.5 and float(red_over_blue.max()) > 2.0  # warm and cool casts both drawn
    assert float(red_over_blue.log().abs().max()) <= 2 * max(map(abs, prior.colour_warmth)) + 1e-5
    assert float(new.gamma[off].min()) < 0.6 and float(new.gamma[off].max()) > 1.7
    assert float(new.saturation[off].min()) < 0.45 and float(new.saturation[off].max()) > 1.2
    assert 0.0 <= float(new.glare.min()) and float(new.glare.max()) <= prior.colour_glare[1]
    assert "colour_probability" not in PhotoData(prior).to_dict()["look"]
    assert PhotoData(replace(prior, colour_probability=0.4)).to_dict()["look"]["colour_probability"] == 0.4


def test_sensor_saturation_and_glare_act_as_a_camera_would():
    g = torch.Generator().manual_seed(11)
    look = default_look(WORLD, 1)
    cams = spec_cameras(WORLD.camera, 1, 48, 48)
    scene = one_object("cube")
    plain = render_photo(scene, WORLD, cams, look, g, supersample=1)
    grey = render_photo(scene, WORLD, cams, replace(look, saturation=torch.tensor([0.0])), g, supersample=1)
    half = render_photo(scene, WORLD, cams, replace(look, saturation=torch.tensor([0.5])), g, supersample=1)
    glare = render_photo(scene, WORLD, cams, replace(look, glare=torch.tensor([0.2])), g, supersample=1)
    spread = lambda img: float((img.amax(-1) - img.amin(-1)).max())  # noqa: E731
    assert spread(plain) > 0.3 and spread(grey) < 1e-6
    assert abs(spread(half) - spread(plain) / 2) < 0.01
    assert torch.allclose(grey.mean(-1), plain.mean(-1), atol=1e-5)  # grey keeps each pixel's brightness
    assert torch.allclose(glare, plain * 0.8 + 0.2, atol=1e-5)  # ideal sensor: glare lifts every pixel


@pytest.mark.parametrize("chance, flag, before", [("apex_probability", "apex_up", {}),
                                                  ("welded_probability", "welded", {"apex_probability": 0.5})])
def test_mesh_normal_draws_come_last_and_mark_smooth_images_only(chance, flag, before):
    prior = LookPrior(cast_shadow_probability=0.5, harsh_probability=0.3, colour_probability=0.4, **before)
    old = sample_looks(prior, 400, torch.Generator().manual_seed(5))
    new = sample_looks(replace(prior, **{chance: 0.5}), 400, torch.Generator().manual_seed(5))
    for f in fields(old):
        if f.name != flag:
            assert torch.equal(getattr(old, f.name), getattr(new, f.name)), f.name
    old_flag, new_flag = getattr(old, flag), getattr(new, flag)
    assert not bool(old_flag.any()) and not bool((new_flag & ~new.smooth).any())
    assert 0.35 < float(new_flag[new.smooth].float().mean()) < 0.65
    assert chance not in PhotoData(prior).to_dict()["look"]
    assert PhotoData(replace(prior, **{chance: 0.5})).to_dict()["look"][chance] == 0.5


def test_welded_normals_average_every_face_at_a_point():
    cube = next(s for s in WORLD.shapes if s.name == "cube")
    verts, faces = primitive(cube)
    normals = welded_normals(verts, faces)
    corner = verts[faces] / verts[faces].norm(dim=-1, keepdim=True)  # a cube's corner: the diagonal
    assert torch.allclose(normals, corner, atol=1e-5)
    sphere = next(s for s in WORLD.shapes if s.name == "sphere")
    verts, faces = primitive(sphere, detail=2)
    true = corner_normals(sphere, verts, faces)  # a smooth surface: the average is nearly its normal
    assert float((welded_normals(verts, faces) - true).norm(dim=-1).max()) < 0.05
    cone = next(s for s in WORLD.shapes if s.name == "cone")
    verts, faces = primitive(cone)
    tip = verts[faces][..., 2] == verts[:, 2].max()
    assert torch.allclose(welded_normals(verts, faces)[tip], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)


def test_welded_shading_rounds_a_cubes_faces_and_leaves_the_rest():
    g = torch.Generator().manual_seed(2)
    cams = look_at_cameras(torch.tensor([[0.5, -0.4, 0.6]]), torch.zeros(1, 3), torch.tensor([25.0]), 64, 64)
    look = replace(default_look(WORLD, 1), smooth=torch.tensor([True]), light_dir=torch.tensor([[[0.6, 0.0, 0.8]]]))
    welded = replace(look, welded=torch.tensor([True]))
    draw = lambda scene, lk: render_photo(scene, WORLD, cams, lk, g, supersample=1)  # noqa: E731
    cube, rounded = draw(one_object("cube"), look), draw(one_object("cube"), welded)
    seen = region_map(one_object("cube"), WORLD, cams)[0] == 0
    inside = F.max_pool2d((~seen)[None, None].float(), 3, 1, 1)[0, 0] == 0  # clear of the outline
    near = F.max_pool2d(seen[None, None].float(), 3, 1, 1)[0, 0] > 0  # the cube and its edge's pixels
    moved = (rounded - cube).abs().amax(-1)[0]
    assert float(moved[inside].mean()) > 0.03  # the faces shade as if rounded
    assert bool((moved[~near] == 0).all())  # table and background untouched
    flat = replace(welded, smooth=torch.tensor([False]))
    assert torch.equal(draw(one_object("cube"), flat), draw(one_object("cube"), replace(look, smooth=torch.tensor([False]))))


def test_an_averaged_apex_shades_a_cones_top_like_a_dome_and_nothing_else():
    g = torch.Generator().manual_seed(2)
    eye = torch.tensor([[0.0, -0.25, 1.2]])  # from high above, as the views where cones pass for spheres
    cams = look_at_cameras(eye, torch.zeros(1, 3), torch.tensor([20.0]), 64, 64)
    look = replace(default_look(WORLD, 1), smooth=torch.tensor([True]), light_dir=torch.tensor([[[0.6, 0.0, 0.8]]]))
    up = replace(look, apex_up=torch.tensor([True]))
    draw = lambda scene, lk: render_photo(scene, WORLD, cams, lk, g, supersample=1)  # noqa: E731
    cone, apex_cone = draw(one_object("cone"), look), draw(one_object("cone"), up)
    moved = (apex_cone - cone).abs().amax(-1)[0]
    assert float(moved.max()) > 0.05  # the top of the cone shades differently
    cone_pixels = region_map(one_object("cone"), WORLD, cams)[0] == 0  # where the cone is seen
    cone_pixels = F.max_pool2d(cone_pixels[None, None].float(), 3, 1, 1)[0, 0] > 0  # and its edge's pixels
    assert bool((moved[~cone_pixels] == 0).all())  # table and background untouched
    for shape in ("sphere", "cylinder", "cube"):
        assert torch.equal(draw(one_object(shape), look), draw(one_object(shape), up)), shape
    flat = replace(up, smooth=torch.tensor([False]))
    assert torch.equal(draw(one_object("cone"), flat), draw(one_object("cone"), replace(look, smooth=torch.tensor([False]))))


def test_smooth_shading_hides_a_spheres_facets():
    g = torch.Generator().manual_seed(10)
    look = default_look(WORLD, 1)
    cams = spec_cameras(WORLD.camera, 1, 96, 96)
    scene = one_object("sphere")
    flat = render_photo(scene, WORLD, cams, look, g, supersample=1)
    smooth = render_photo(scene, WORLD, cams, replace(look, smooth=torch.tensor([True])), g, supersample=1)
    # distinct shades on the sphere: a few per facet row when flat, many when smooth
    flat_levels = len(torch.unique((flat[0] * 255).round().reshape(-1, 3), dim=0))
    smooth_levels = len(torch.unique((smooth[0] * 255).round().reshape(-1, 3), dim=0))
    assert smooth_levels > 2 * flat_levels


def test_photo_dataset_is_seeded_and_resumes_to_the_same_bytes(tmp_path):
    world = WORLD.with_(image_size=32)
    data = PhotoData(supersample=1)
    a = write_dataset(tmp_path / "a", 24, 3, world, chunk=8, progress=False, photo=data)
    b = tmp_path / "b"
    write_dataset(b, 24, 3, world, chunk=8, progress=False, photo=data)
    meta = (b / "meta.json").read_text().replace('"done": 24', '"done": 8')
    (b / "meta.json").write_text(meta)
    write_dataset(b, 24, 3, world, chunk=8, progress=False, photo=data)
    da, db = SceneDataset.open(a), SceneDataset.open(b)
    assert np.array_equal(da.images, db.images) and da.images.shape == (24, 32, 32, 3)
    assert np.array_equal(da.latents["camera"], db.latents["camera"])
    groups = da.cameras(np.arange(24))
    assert sum(len(idx) for idx, _ in groups) == 24
    for idx, cams in groups:
        wide = CameraEnvelope(elevation_deg=(25, 90), distance=(0.7, 1.7), fov_deg=(25, 75), roll_deg=(-20, 20))
        assert envelope_violations(cams, wide) == [""] * len(idx)  # the envelope plus its training margin
    assert math.isclose(float(da.images.mean()), float(db.images.mean()))


def test_a_large_batch_is_drawn_in_pieces_that_match_it_drawn_whole(monkeypatch):
    """``render_photo`` bounds the pixels it rasterises at once (a 250-image evaluation chunk of
    640x480 supersampled took about 14 GB whole); the pieces give the same images, bit for bit,
    with mixed looks (cast shadows, soft edges)."""
    import renderer.photo as photo

    world = World()
    g = torch.Generator().manual_seed(3)
    cams = sample_cameras(world.envelope, 7, g, 60, 80, margin=False)
    scene = sample_scenes(world, 7, generator=g, cameras=(cams, view_cameras(cams, world)))
    look = sample_looks(replace(LookPrior(), welded_probability=0.5, cast_shadow_probability=0.5), 7, g)
    whole = render_photo(scene, world, cams, look, torch.Generator().manual_seed(1), detail=2)
    monkeypatch.setattr(photo, "RASTER_PIXELS", 60 * 80 * 4 * 3)  # three images a piece
    drawn = []
    monkeypatch.setattr(photo, "pack_scene", lambda s, *a: drawn.append(s.batch_size) or pack_scene(s, *a))
    pieces = render_photo(scene, world, cams, look, torch.Generator().manual_seed(1), detail=2)
    assert drawn == [3, 3, 1] and look.welded.any() and not look.welded.all()
    assert torch.equal(whole, pieces)
