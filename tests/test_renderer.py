"""Behaviour of the generative model in ``renderer/``: meshes, rendering, camera, prior, dataset.

Images are (B, H, W, 3) floats in [0, 1]; pixel (row i, column j) has its centre at
(u, v) = (j + 0.5, i + 0.5). Soft rendering with a backward pass is slow on the CPU
(about 9 images/s at 64x64), so the soft tests use one image at a time.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from renderer.camera import camera_info, object_bboxes, project
from renderer.dataset import FIELDS, SceneDataset, render_images, write_dataset
from renderer.dataset import main as dataset_main
from renderer.meshes import mesh_library, primitive
from renderer.prior import footprints_overlap, sample_scenes
from renderer.render import RasterSettings, instance_map, make_renderer, render, render_antialiased
from renderer.scene import SceneBatch, empty_scenes, quat_to_matrix, yaw_to_quat

SIZE = 64


def changed_pixels(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: pixels where two (H, W, 3) images differ."""
    return (image - reference).abs().amax(dim=-1) > 1e-6


def pixel_centroid(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool -> (2,) mean (u, v) of the set pixels' centres."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return torch.stack([cols.float().mean() + 0.5, rows.float().mean() + 0.5])


def with_slots(scene: SceneBatch, n: int, fill: dict[str, torch.Tensor]) -> SceneBatch:
    """Append absent slots up to N = n, holding the values in ``fill`` (one slot's worth each)."""
    extra = n - scene.num_slots
    b = scene.batch_size

    def pad(t: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, value.to(t.dtype).expand(b, extra, *t.shape[2:])], dim=1)

    return SceneBatch(
        present=pad(scene.present, torch.tensor(False)),
        shape=pad(scene.shape, fill["shape"]), color=pad(scene.color, fill["color"]),
        position=pad(scene.position, fill["position"]), yaw=pad(scene.yaw, fill["yaw"]),
    )


# --- meshes -------------------------------------------------------------------------------


def _expected_volume(name: str, sx: float, sy: float, sz: float) -> float:
    box = sx * sy * sz
    return {"cube": box, "box": box, "wedge": box / 2, "sphere": math.pi / 6 * box,
            "cylinder": math.pi / 4 * box, "cone": math.pi / 12 * box}[name]


def test_a_world_hashes_once_as_its_fields_and_travels_without_its_hash():
    """The hash is kept after the first call, agrees between equal worlds, differs for a changed
    one, and is not pickled (string hashes differ between processes)."""
    import pickle

    from renderer.world import World

    a, b = World(), World()
    assert hash(a) == hash(b) and a == b
    assert a.__dict__["_hash"] == hash(b)
    changed = a.with_(max_objects=2)
    assert changed != a and hash(changed) != hash(a)
    copy = pickle.loads(pickle.dumps(a))
    assert "_hash" not in copy.__dict__ and copy == a and hash(copy) == hash(a)
    assert {a: 1}[copy] == 1


@pytest.mark.parametrize("name", ["cube", "box", "wedge", "sphere", "cylinder", "cone"])
def test_meshes_are_watertight_with_outward_winding(world, name):
    spec = world.shapes[world.shape_index(name)]
    verts, faces = primitive(spec)
    directed = [e for a, b, c in faces.tolist() for e in ((a, b), (b, c), (c, a))]
    # Closed and consistently wound: each directed edge once, and its reverse present.
    assert len(directed) == len(set(directed)), "an edge is used twice in the same direction"
    edges = set(directed)
    assert all((b, a) in edges for a, b in edges), "an edge has no opposite: the mesh has a hole"
    # Outward winding makes the divergence-theorem volume positive; low-poly round shapes
    # come close to the analytic volume.
    tri = verts[faces].double()
    volume = (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum().item() / 6
    assert volume > 0
    assert volume == pytest.approx(_expected_volume(name, *spec.size), rel=0.15)


@pytest.mark.parametrize("name", ["cube", "box", "wedge", "sphere", "cylinder", "cone"])
def test_meshes_fill_their_declared_size_centred_on_the_origin(world, name):
    spec = world.shapes[world.shape_index(name)]
    verts, _ = primitive(spec)
    lo, hi = verts.amin(dim=0), verts.amax(dim=0)
    assert torch.allclose(hi - lo, torch.tensor(spec.size), atol=1e-6)
    assert torch.allclose(hi + lo, torch.zeros(3), atol=1e-6)


def test_mesh_library_padding_faces_are_degenerate(world):
    lib = mesh_library(world)
    for s in range(len(world.shapes)):
        pad = lib.faces[s, lib.num_faces[s]:]
        assert (pad == 0).all()
        assert (lib.verts[s, lib.num_verts[s]:] == 0).all()


# --- rendering ----------------------------------------------------------------------------


def test_empty_scene_equals_the_table_only_image(world):
    image = render(empty_scenes(1, world.max_objects), world)[0]
    assert torch.equal(image, render(empty_scenes(1, 0), world)[0])

    # The table only, worked out by hand: a flat quad facing +z, shaded once, on the background.
    light = torch.tensor(world.light.direction)
    light = light / light.norm()
    table = torch.tensor(world.table_rgb) * (world.light.ambient + world.light.diffuse * light[2].clamp_min(0))
    background = torch.tensor(world.background_rgb)
    h = world.table_size / 2
    corners, _ = project(torch.tensor([[-h, -h, 0.0], [h, -h, 0.0], [h, h, 0.0], [-h, h, 0.0]]), world, SIZE, SIZE)
    v, u = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    # Signed distance (pixels) of each pixel centre to each edge of the convex projected quad.
    side = []
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        edge = b - a
        side.append((edge[0] * (v - a[1]) - edge[1] * (u - a[0])) / edge.norm())
    side = torch.stack(side)
    side = side * torch.sign(side.sum(dim=0).mean())  # positive inside, whatever the winding
    inside, outside = (side > 1.0).all(dim=0), (side < -1.0).any(dim=0)
    assert inside.sum() > 0.3 * SIZE * SIZE and outside.sum() > 0.2 * SIZE * SIZE
    assert torch.allclose(image[inside], table.expand(int(inside.sum()), 3), atol=1e-5)
    assert torch.allclose(image[outside], background.expand(int(outside.sum()), 3), atol=1e-5)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_absent_slots_contribute_nothing_whatever_they_hold(world, make_scene, mode):
    scene = make_scene(("wedge", "red", 0.05, -0.03, 0.4))
    garbage = {"shape": torch.tensor(99), "color": torch.tensor(-7),
               "position": torch.tensor([float("nan"), 1e9, -float("inf")]), "yaw": torch.tensor(float("inf"))}
    padded = with_slots(scene, world.max_objects, garbage)
    assert torch.equal(render(padded, world, mode), render(scene, world, mode))
    if mode == "hard":
        assert torch.equal(instance_map(padded, world), instance_map(scene, world))
        boxes = object_bboxes(padded, world, SIZE, SIZE)
        assert torch.equal(boxes[:, :1], object_bboxes(scene, world, SIZE, SIZE))
        assert (boxes[:, 1:] == 0).all()


@pytest.mark.parametrize(("name", "x", "y", "size"), [
    ("cube", 0.0, 0.0, (64, 64)), ("cube", 0.2, -0.2, (64, 64)), ("cube", -0.2, 0.15, (64, 64)),
    ("box", 0.18, 0.1, (64, 64)), ("sphere", -0.1, -0.2, (64, 64)), ("cylinder", 0.1, 0.2, (64, 64)),
    ("cube", 0.15, 0.1, (48, 96)), ("sphere", -0.2, 0.2, (96, 48)),
])
def test_single_object_pixels_are_centred_where_project_puts_it(world, make_scene, name, x, y, size):
    # Shapes whose silhouette is centred on their bounding-box centre (not the bottom-heavy
    # wedge or cone): the centroid of the pixels they change sits on the centre's projection.
    height, width = size
    scene = make_scene((name, "blue", x, y, 0.3))
    image = render(scene, world, height=height, width=width)[0]
    table = render(empty_scenes(1, 1), world, height=height, width=width)[0]
    mask = changed_pixels(image, table)
    assert mask.sum() >= 30
    uv, _ = project(scene.position[0, 0], world, height, width)
    assert (pixel_centroid(mask) - uv).norm() < 1.5


def test_object_bbox_contains_every_pixel_the_object_changes(world):
    scene = sample_scenes(world, 8, seed=5, counts=1)
    images = render(scene, world)
    table = render(empty_scenes(1, 1), world)[0]
    boxes = object_bboxes(scene, world, SIZE, SIZE)[:, 0]
    for image, (u0, v0, u1, v1) in zip(images, boxes.tolist()):
        rows, cols = torch.nonzero(changed_pixels(image, table), as_tuple=True)
        assert cols.min() >= math.floor(u0) and cols.max() + 1 <= math.ceil(u1)
        assert rows.min() >= math.floor(v0) and rows.max() + 1 <= math.ceil(v1)


@pytest.mark.parametrize("near_slot", [0, 1])
def test_nearer_of_two_overlapping_objects_wins_the_shared_pixels(world, make_scene, near_slot):
    # The camera sits on the -x side: the cube (smaller x) is nearer than the cylinder behind it.
    near = ("cube", "red", -0.1, 0.0, 0.3)
    far = ("cylinder", "green", 0.06, 0.02, 0.0)
    objects = (near, far) if near_slot == 0 else (far, near)
    scene = make_scene(*objects)
    _, depth = project(scene.position, world, SIZE, SIZE)
    assert depth[0, near_slot] < depth[0, 1 - near_slot]
    assert not footprints_overlap(scene, world).any()

    alone = [instance_map(make_scene(o), world)[0] >= 0 for o in objects]
    shared = alone[0] & alone[1]
    assert shared.sum() >= 10, "the test scene must overlap in the image"
    assert (instance_map(scene, world)[0][shared] == near_slot).all()
    near_alone = render(make_scene(near), world)[0]
    assert torch.equal(render(scene, world)[0][shared], near_alone[shared])


@pytest.mark.parametrize(("name", "turn_deg", "same"), [
    ("cube", 90, True), ("box", 180, True), ("box", 90, False), ("wedge", 90, False), ("wedge", 180, False),
])
def test_turning_an_object_by_its_symmetry_keeps_the_image(world, make_scene, name, turn_deg, same):
    yaw = 0.3
    a = render(make_scene((name, "yellow", 0.05, -0.03, yaw)), world)[0]
    b = render(make_scene((name, "yellow", 0.05, -0.03, yaw + math.radians(turn_deg))), world)[0]
    differing = ((a - b).abs().amax(dim=-1) > 0.05).sum().item()
    if same:
        assert differing <= 2
    else:
        assert differing >= 30


def test_quaternion_orientation_renders_like_the_same_yaw(world):
    scene = sample_scenes(world, 6, seed=2, counts=3)
    turned = SceneBatch(scene.present, scene.shape, scene.color, scene.position,
                        torch.zeros_like(scene.yaw), yaw_to_quat(scene.yaw))
    assert torch.allclose(render(turned, world), render(scene, world), atol=1e-5)


def test_albedo_overrides_the_palette_and_is_differentiable(world):
    scene = sample_scenes(world, 4, seed=6, counts=2)
    palette = torch.tensor([c.rgb for c in world.colors])
    same = SceneBatch(scene.present, scene.shape, scene.color, scene.position, scene.yaw,
                      albedo=palette[scene.color])
    assert torch.allclose(render(same, world, "soft"), render(scene, world, "soft"), atol=1e-6)
    n = scene.num_slots
    grey = torch.full((4, n, 3), 0.5, requires_grad=True)
    image = render(SceneBatch(scene.present, scene.shape, scene.color, scene.position, scene.yaw, albedo=grey),
                   world, "soft")
    assert not torch.allclose(image, render(scene, world, "soft"), atol=1e-3)
    image[..., 0].sum().backward()  # more red anywhere: every visible object's red albedo matters
    assert (grey.grad[..., 0][scene.present] > 0).all() and (grey.grad[..., 0][~scene.present] == 0).all()
    assert torch.allclose(grey.grad[..., 1:], torch.zeros(4, n, 2))


def test_soft_render_shows_the_antialiased_table_and_no_halo_around_objects(world):
    empty = empty_scenes(2, world.max_objects)
    assert torch.allclose(render(empty, world, "soft", blur_sigma_px=1.0), render_antialiased(empty, world), atol=1e-6)
    # spheres have hundreds of faces: with a flat background showing through the K slots they
    # wore a dark halo, and the true scene fitted the image worse than an empty table did
    sphere = world.shape_index("sphere")
    scene = sample_scenes(world, 6, seed=8, counts=2)
    scene = SceneBatch(scene.present, torch.full_like(scene.shape, sphere), scene.color, scene.position, scene.yaw)
    target = render_antialiased(scene, world)
    err = lambda img: ((img - target) ** 2).sum(dim=(1, 2, 3))  # noqa: E731
    for blur in (0.5, 1.0):
        assert (err(render(scene, world, "soft", blur_sigma_px=blur)) < 0.5 * err(render_antialiased(
            SceneBatch(torch.zeros_like(scene.present), scene.shape, scene.color, scene.position, scene.yaw),
            world))).all()


def test_hard_render_is_deterministic(world):
    scene = sample_scenes(world, 8, seed=4)
    assert torch.equal(render(scene, world), render(scene, world))


# --- soft rendering: gradients ------------------------------------------------------------


def test_soft_render_gradient_wrt_position_and_yaw_is_nonzero_and_finite(world, make_scene):
    target = render(make_scene(("wedge", "green", 0.04, -0.02, 0.6)), world, "soft")
    scene = with_slots(make_scene(("wedge", "green", 0.07, -0.05, 0.9)), world.max_objects,
                       {"shape": torch.tensor(1), "color": torch.tensor(1),
                        "position": torch.tensor([0.1, 0.1, 0.05]), "yaw": torch.tensor(0.2)})
    position = scene.position.clone().requires_grad_()
    yaw = scene.yaw.clone().requires_grad_()
    image = render(SceneBatch(scene.present, scene.shape, scene.color, position, yaw), world, "soft")
    ((image - target) ** 2).mean().backward()

    assert torch.isfinite(position.grad).all() and torch.isfinite(yaw.grad).all()
    assert (position.grad[0, 0, :2].abs() > 0).all()
    assert yaw.grad[0, 0].abs() > 0
    assert (position.grad[0, 1:] == 0).all() and (yaw.grad[0, 1:] == 0).all(), "absent slots got gradient"


def _displaced_single_objects(world, count: int, seed: int, shift_m: float, turn_rad: float):
    """``count`` one-object scenes (every shape in turn) and the same scenes displaced by
    ``shift_m`` in a random direction and turned by +-``turn_rad``: (true, position, yaw)."""
    g = torch.Generator().manual_seed(seed)
    true = sample_scenes(world, count, generator=g, counts=1)
    true.shape[:, 0] = torch.arange(count) % len(world.shapes)
    true.position[:, 0, 2] = torch.tensor([s.resting_z for s in world.shapes])[true.shape[:, 0]]
    true.position[:, 0, :2] *= 0.6  # keep displaced objects on the table
    angle = torch.rand(count, generator=g) * 2 * math.pi
    shift = torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros(count)], dim=-1) * shift_m
    sign = torch.where(torch.arange(count) % 2 == 0, 1.0, -1.0)
    return true, true.position + shift[:, None, :], true.yaw + turn_rad * sign[:, None]


def test_soft_position_gradient_points_toward_the_true_position(world):
    # A gradient that follows the image, not just the shading: for most displaced objects
    # -dL/d(x, y) points back toward where the target has them.
    true, position, _ = _displaced_single_objects(world, 12, seed=2, shift_m=0.03, turn_rad=0.0)
    with torch.no_grad():
        target = render(true, world, "soft")
    position.requires_grad_()
    image = render(SceneBatch(true.present, true.shape, true.color, position, true.yaw), world, "soft")
    ((image - target) ** 2).sum().backward()  # a sum: each scene's gradient is its own loss's
    toward = (true.position - position.detach())[:, 0, :2]
    cosine = torch.nn.functional.cosine_similarity(-position.grad[:, 0, :2], toward, dim=-1)
    assert (cosine > 0.5).sum() >= 10, f"cosines {cosine.tolist()}"


def test_soft_gradient_steps_move_displaced_objects_back_toward_their_true_pose(world):
    true, position, yaw = _displaced_single_objects(world, 3, seed=5, shift_m=0.04, turn_rad=0.3)
    with torch.no_grad():
        target = render(true, world, "soft")
    position.requires_grad_()
    yaw.requires_grad_()
    opt = torch.optim.Adam([position, yaw], lr=0.01)

    def errors() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return (position - true.position)[:, 0, :2].norm(dim=-1), (yaw - true.yaw)[:, 0].abs()

    start = errors()
    for _ in range(12):  # each step is a soft forward + backward of 3 images: ~0.5 s here
        opt.zero_grad()
        image = render(SceneBatch(true.present, true.shape, true.color, position, yaw), world, "soft")
        ((image - target) ** 2).sum().backward()
        position.grad[..., 2] = 0  # objects rest on the table: optimise x, y and yaw only
        opt.step()
    end = errors()
    assert (end[0] <= 0.5 * start[0]).all(), f"position error {start[0].tolist()} m -> {end[0].tolist()} m"
    # Yaw is scored only where the shape has a turn to score (cube, box, wedge come first).
    has_yaw = torch.tensor([world.shapes[s].yaw_symmetry_deg is not None for s in true.shape[:, 0]])
    assert (end[1] < start[1])[has_yaw].all(), f"yaw error {start[1].tolist()} rad -> {end[1].tolist()} rad"


# --- camera -------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 96), (480, 640)])
def test_camera_info_intrinsics_and_pose_reproduce_project(world, height, width):
    info = camera_info(world, height, width)
    g = torch.Generator().manual_seed(0)
    points = (torch.rand(50, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([0.6, 0.6, 0.3], dtype=torch.float64)
    rot = quat_to_matrix(torch.tensor([info["orientation"][k] for k in "xyzw"], dtype=torch.float64))
    centre = torch.tensor([info["position"][k] for k in "xyz"], dtype=torch.float64)
    optical = (points - centre) @ rot  # rows: points in the optical frame (x right, y down, z forward)
    assert (optical[:, 2] > 0).all()
    uv = torch.stack([info["fx"] * optical[:, 0] / optical[:, 2] + info["cx"],
                      info["fy"] * optical[:, 1] / optical[:, 2] + info["cy"]], dim=-1)
    expected, depth = project(points.float(), world, height, width)
    assert torch.allclose(uv.float(), expected, atol=1e-2)
    assert torch.allclose(optical[:, 2].float(), depth, atol=1e-5)


# --- invalid input ------------------------------------------------------------------------


def _bad(field: str, slot_value) -> SceneBatch:
    scene = empty_scenes(1, 2)
    scene.present[0, 0] = True
    scene.position[0, 0] = torch.tensor([0.0, 0.0, 0.065])
    getattr(scene, field)[0, 0] = slot_value
    return scene


@pytest.mark.parametrize(("scene_fn", "field"), [
    (lambda: _bad("shape", 6), "shape"),
    (lambda: _bad("shape", -1), "shape"),
    (lambda: _bad("color", 6), "color"),
    (lambda: _bad("position", torch.tensor([float("nan"), 0.0, 0.065])), "position"),
    (lambda: _bad("position", torch.tensor([0.0, float("inf"), 0.065])), "position"),
    (lambda: _bad("yaw", float("nan")), "yaw"),
    (lambda: empty_scenes(1, 4), "max_objects"),
    (lambda: SceneBatch(torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.int64),
                        torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, 3), torch.zeros(1, 1),
                        torch.zeros(1, 1, 4)), "quat"),
    (lambda: SceneBatch(torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.int64),
                        torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, 2), torch.zeros(1, 1)), "position"),
])
@pytest.mark.parametrize("entry", ["render", "instance_map", "object_bboxes"])
def test_invalid_scene_raises_value_error_naming_the_field(world, scene_fn, field, entry):
    scene = scene_fn()
    call = {"render": lambda: render(scene, world),
            "instance_map": lambda: instance_map(scene, world),
            "object_bboxes": lambda: object_bboxes(scene, world, SIZE, SIZE)}[entry]
    with pytest.raises(ValueError, match=field):
        call()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"height": 0, "width": 64}, "height"), ({"height": 64, "width": -3}, "width"),
    ({"height": 64.0, "width": 64}, "height"), ({"height": 64, "width": 64, "blur_sigma_px": -1.0}, "blur_sigma_px"),
    ({"height": 64, "width": 64, "faces_per_pixel": 0}, "faces_per_pixel"),
])
def test_raster_settings_reject_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RasterSettings(**kwargs)


def test_render_rejects_non_positive_image_size_and_unknown_mode(world):
    scene = empty_scenes(1, 1)
    with pytest.raises(ValueError, match="height"):
        render(scene, world, height=0)
    with pytest.raises(ValueError, match="width"):
        render(scene, world, height=32, width=-1)
    with pytest.raises(ValueError, match="mode"):
        make_renderer(world, "wireframe")


# --- the prior ----------------------------------------------------------------------------


def test_footprints_overlap_detects_touching_discs(world, make_scene):
    # Guards the check the prior test relies on: two cubes 5 cm apart do intersect.
    assert footprints_overlap(make_scene(("cube", "red", 0.0, 0.0, 0.0), ("cube", "blue", 0.05, 0.0, 0.0)), world).all()
    assert not footprints_overlap(make_scene(("cube", "red", -0.2, 0.0, 0.0), ("cube", "blue", 0.2, 0.0, 0.0)), world).any()


@pytest.mark.parametrize("counts", [None, 3])
def test_prior_never_yields_intersecting_footprints(world, counts):
    scene = sample_scenes(world, 3000, seed=7, counts=counts)
    assert not footprints_overlap(scene, world).any()
    p = scene.present
    e = world.placement_half_extent
    assert (scene.position[p][:, :2].abs() <= e).all()
    resting = torch.tensor([s.resting_z for s in world.shapes])
    assert torch.allclose(scene.position[p][:, 2], resting[scene.shape[p]])


def test_prior_draws_counts_shapes_and_colours_uniformly(world):
    scene = sample_scenes(world, 6000, seed=1)
    n = world.max_objects
    count_freq = torch.bincount(scene.count, minlength=n + 1).float() / 6000
    assert (count_freq - 1 / (n + 1)).abs().max() < 0.03
    assert (scene.present == (torch.arange(n) < scene.count[:, None])).all(), "objects fill the first slots"
    shapes = torch.bincount(scene.shape[scene.present], minlength=len(world.shapes)).float()
    colours = torch.bincount(scene.color[scene.present], minlength=len(world.colors)).float()
    assert (shapes / shapes.sum() - 1 / len(world.shapes)).abs().max() < 0.03
    assert (colours / colours.sum() - 1 / len(world.colors)).abs().max() < 0.03


def test_prior_is_deterministic_per_seed(world):
    a, b, c = (sample_scenes(world, 200, seed=s) for s in (3, 3, 4))
    for f in ("present", "shape", "color", "position", "yaw"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert not torch.equal(a.position, c.position)


# --- the dataset command ------------------------------------------------------------------

DATASET_ARGS = {"count": 40, "seed": 3, "chunk": 16}


def _files(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, world):
    out = tmp_path_factory.mktemp("dataset") / "a"
    write_dataset(out, DATASET_ARGS["count"], DATASET_ARGS["seed"], world, chunk=DATASET_ARGS["chunk"],
                  progress=False)
    return out


def test_dataset_command_is_reproducible_from_its_seed(dataset_dir, tmp_path):
    other = tmp_path / "b"
    rc = dataset_main(["--count", str(DATASET_ARGS["count"]), "--seed", str(DATASET_ARGS["seed"]),
                       "--chunk", str(DATASET_ARGS["chunk"]), "--out", str(other)])
    assert rc == 0
    assert _files(other) == _files(dataset_dir)


@pytest.mark.parametrize("flags", [["--harsh", "0.3"], ["--cast-shadows", "0.5"], ["--photo", "--harsh", "1.5"]])
def test_dataset_command_refuses_look_chances_without_photo_or_outside_0_1(flags, tmp_path, capsys):
    assert dataset_main(["--count", "2", "--out", str(tmp_path / "x"), *flags]) == 2
    assert "takes a chance in [0, 1], with --photo" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_dataset_rerun_on_a_complete_dataset_changes_nothing(dataset_dir, world):
    before = _files(dataset_dir)
    mtimes = {p.name: p.stat().st_mtime_ns for p in dataset_dir.iterdir()}
    write_dataset(dataset_dir, DATASET_ARGS["count"], DATASET_ARGS["seed"], world, chunk=DATASET_ARGS["chunk"],
                  progress=False)
    assert _files(dataset_dir) == before
    assert {p.name: p.stat().st_mtime_ns for p in dataset_dir.iterdir()} == mtimes


def test_dataset_resumes_a_partial_run_to_the_same_bytes(dataset_dir, world, tmp_path):
    # An interrupted run: one chunk recorded as done, the rest of the arrays never written.
    partial = tmp_path / "partial"
    shutil.copytree(dataset_dir, partial)
    meta = json.loads((partial / "meta.json").read_text())
    meta["done"] = DATASET_ARGS["chunk"]
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    for name in ("images", *FIELDS):
        array = np.load(partial / f"{name}.npy", mmap_mode="r+")
        array[DATASET_ARGS["chunk"]:] = 0
        array.flush()
        del array
    assert _files(partial) != _files(dataset_dir)
    write_dataset(partial, DATASET_ARGS["count"], DATASET_ARGS["seed"], world, chunk=DATASET_ARGS["chunk"],
                  progress=False)
    assert _files(partial) == _files(dataset_dir)


def test_dataset_refuses_a_folder_made_with_other_settings(dataset_dir, world):
    with pytest.raises(ValueError, match="other settings"):
        write_dataset(dataset_dir, DATASET_ARGS["count"], DATASET_ARGS["seed"] + 1, world,
                      chunk=DATASET_ARGS["chunk"], progress=False)


def test_dataset_images_are_the_renders_of_its_latents(dataset_dir):
    data = SceneDataset.open(dataset_dir)
    assert len(data) == DATASET_ARGS["count"]
    assert data.images.dtype == np.uint8 and data.images.shape == (40, SIZE, SIZE, 3)
    scene = data.scenes(slice(None))
    assert not footprints_overlap(scene, data.world).any()
    expected = render_images(scene, data.world, data.meta["supersample"]).numpy()
    assert np.array_equal(np.asarray(data.images), expected)


def test_the_pinhole_table_mask_is_the_ray_cast_one(world):
    """``table_mask`` without a cast solves ideal pinholes by rows and columns: the same pixels
    as casting a ray through each (envelope cameras of several image shapes, level and tilted,
    wholly and partly on the table); cameras with lens distortion are cast."""
    from renderer.pinhole import sample_cameras
    from renderer.raycast import pinhole_table_mask, table_mask, table_view

    g = torch.Generator().manual_seed(11)
    for height, width in ((80, 80), (48, 64), (90, 160)):
        cams = sample_cameras(world.envelope, 64, g, height, width)
        cast = table_mask(world, cams, table_view(world, cams))
        solved = table_mask(world, cams)
        assert torch.equal(solved, cast)
        assert cast.any() and not cast.all()
    lens = replace(cams, distortion=torch.tensor([[-0.2, 0.05, 0, 0, 0, 0, 0, 0]]).expand(cams.batch_size, 8))
    assert torch.equal(table_mask(world, lens), table_mask(world, lens, table_view(world, lens)))
    assert not torch.equal(table_mask(world, lens), cast)
    with pytest.raises(ValueError, match="distortion"):
        pinhole_table_mask(world, lens)
