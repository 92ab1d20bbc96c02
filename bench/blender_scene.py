"""Render scene specs with Blender's Cycles (path traced, CPU). Runs inside ``.venv-blender``.

    .venv-blender/bin/python bench/blender_scene.py --specs chunk.json --out data/crossrender/images
    .venv-blender/bin/python bench/blender_scene.py --specs chunk.json --out /tmp/masks --mode mask

Standard library, numpy and bpy only: no torch, no project imports, so that this file is the
second, independent implementation of the world's geometry (``renderer/meshes.py`` is the
first; ``python -m bench.crossrender check`` compares the two silhouette by silhouette).

Input: a JSON list of scene specs as ``bench.crossrender.specs`` writes them. Each spec is
self-contained: ``file`` (PNG name), ``table_size`` (m), ``camera`` (position in the table
frame, the ROS optical frame's (x, y, z, w) quaternion, pinhole fx fy cx cy, width height),
``objects`` (shape, size (x, y, z) m, position = bounding-box centre, yaw_deg about +z, and
the look: rgb (display sRGB in [0, 1]), roughness, specular) and ``look`` (light, ambient,
table, floor, exposure, sensor noise, samples, seed). Existing PNGs are skipped (resumable).

Geometry, as in ``renderer/meshes.py`` (object frame, centred on the bounding box; yaw turns
+x toward +y):
- cube / box: cuboid of size (x, y, z); the box's long side is x.
- wedge: right-triangle prism along y; vertical face at -x, the slope falls toward +x.
- sphere: ellipsoid inscribed in the box; cylinder: elliptic, axis z; cone: base at -z, apex +z.
Unlike ours, the meshes here are finely tessellated and smooth-shaded, with 3 mm rounded edges
(bevels cut inward, so every bounding box is exact).

Modes: ``photo`` (the development set) and ``mask`` (flat emission: object k in slot colour
one-hot k of RGB, the table top white, everything else black; one sample at the pixel centre;
for the conventions check).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector

SEGMENTS = 64  # around cylinders, cones and spheres (ours: 16 and 12)
BEVEL_M = 0.003  # rounded edges of cuboids, wedges and rims
TABLE_THICKNESS = 0.03
LEG_HEIGHT = 0.72
MASK_COLORS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


# ----------------------------------------------------------------------------- geometry

def _ring(n: int, rx: float, ry: float, z: float) -> list:
    return [(rx * math.cos(2 * math.pi * k / n), ry * math.sin(2 * math.pi * k / n), z) for k in range(n)]


def shape_geometry(name: str, size: list[float]) -> tuple[list, list]:
    """(verts, faces) of one primitive in its own frame: centred on its bounding box, metres,
    outward winding. Faces may be polygons (lists of any length)."""
    sx, sy, sz = size
    x, y, z = sx / 2, sy / 2, sz / 2
    if name in ("cube", "box"):
        verts = [(-x, -y, -z), (x, -y, -z), (x, y, -z), (-x, y, -z),
                 (-x, -y, z), (x, -y, z), (x, y, z), (-x, y, z)]
        faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
        return verts, faces
    if name == "wedge":
        # vertical face at -x (verts 0, 2, 3, 5), slope from the top edge at -x down to +x
        verts = [(-x, -y, -z), (x, -y, -z), (-x, -y, z), (-x, y, -z), (x, y, -z), (-x, y, z)]
        faces = [(0, 1, 2), (3, 5, 4), (0, 3, 4, 1), (0, 2, 5, 3), (1, 4, 5, 2)]
        return verts, faces
    n = SEGMENTS
    if name == "cylinder":
        verts = _ring(n, x, y, -z) + _ring(n, x, y, z)
        faces = [(k, (k + 1) % n, n + (k + 1) % n, n + k) for k in range(n)]
        faces += [tuple(reversed(range(n))), tuple(range(n, 2 * n))]
        return verts, faces
    if name == "cone":
        verts = _ring(n, x, y, -z) + [(0.0, 0.0, z)]
        faces = [(k, (k + 1) % n, n) for k in range(n)] + [tuple(reversed(range(n)))]
        return verts, faces
    if name == "sphere":
        rings = n // 2
        verts = [(0.0, 0.0, -z)]
        for r in range(1, rings):
            phi = math.pi * r / rings - math.pi / 2
            verts += _ring(n, x * math.cos(phi), y * math.cos(phi), z * math.sin(phi))
        verts.append((0.0, 0.0, z))
        north = len(verts) - 1
        faces = []
        for k in range(n):
            k1 = (k + 1) % n
            faces.append((0, 1 + k1, 1 + k))
            for r in range(rings - 2):
                a, b = 1 + r * n, 1 + (r + 1) * n
                faces.append((a + k, a + k1, b + k1, b + k))
            last = 1 + (rings - 2) * n
            faces.append((last + k, last + k1, north))
        return verts, faces
    raise ValueError(f"no geometry for shape {name!r}")


def mesh_object(name: str, verts: list, faces: list, bevel: bool, smooth: bool) -> bpy.types.Object:
    """A linked mesh object; ``bevel`` rounds edges sharper than 30 degrees (face-area weighted
    normals keep flat faces flat), ``smooth`` interpolates normals (curved surfaces)."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], [list(f) for f in faces])
    mesh.validate()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    for poly in mesh.polygons:
        poly.use_smooth = smooth or bevel
    if smooth and not bevel:
        mesh.set_sharp_from_angle(angle=math.radians(30))
    if bevel:
        mod = obj.modifiers.new("bevel", "BEVEL")
        mod.width = BEVEL_M
        mod.segments = 3
        mod.limit_method = "ANGLE"
        mod.angle_limit = math.radians(30)
        wn = obj.modifiers.new("normals", "WEIGHTED_NORMAL")
        wn.mode = "FACE_AREA"
        wn.keep_sharp = True
    return obj


# ----------------------------------------------------------------------------- materials

def srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def linear_rgba(rgb: list[float]) -> tuple[float, float, float, float]:
    return (*[srgb_to_linear(float(c)) for c in rgb], 1.0)


def principled(name: str, rgb: list[float], roughness: float, specular: float) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = linear_rgba(rgb)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Specular IOR Level"].default_value = specular
    return mat


def textured(name: str, spec: dict) -> bpy.types.Material:
    """Principled BSDF whose colour mixes ``rgb`` and ``rgb2`` by a texture in object
    coordinates: ``kind`` "grey" (fine noise) or "wood" (bands along x, distorted)."""
    mat = principled(name, spec["rgb"], spec["roughness"], spec.get("specular", 0.5))
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    coord = nodes.new("ShaderNodeTexCoord")
    if spec["kind"] == "wood":
        tex = nodes.new("ShaderNodeTexWave")
        tex.wave_type = "BANDS"
        tex.bands_direction = "X"
        tex.inputs["Scale"].default_value = spec["scale"]
        tex.inputs["Distortion"].default_value = spec.get("distortion", 4.0)
        tex.inputs["Detail"].default_value = 3.0
    else:
        tex = nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = spec["scale"]
        tex.inputs["Detail"].default_value = 6.0
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["A"].default_value = linear_rgba(spec["rgb"])
    mix.inputs["B"].default_value = linear_rgba(spec["rgb2"])
    links.new(coord.outputs["Object"], tex.inputs["Vector"])
    links.new(tex.outputs["Fac"], mix.inputs["Factor"])
    links.new(mix.outputs["Result"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def emission(name: str, rgb: tuple[float, float, float]) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.remove(nodes["Principled BSDF"])
    em = nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = (*rgb, 1.0)
    em.inputs["Strength"].default_value = 1.0
    mat.node_tree.links.new(em.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    return mat


# ----------------------------------------------------------------------------- scene

def build_scene(spec: dict, mode: str) -> None:
    """Empty the file and build the spec's table, objects, camera, lights and world."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    look = spec.get("look", {})
    mask = mode == "mask"
    black = emission("black", (0.0, 0.0, 0.0)) if mask else None

    # table: top face at z = 0, square of side table_size, on four legs above a floor
    half = spec["table_size"] / 2
    if mask:  # the top face alone, as our renderer has it
        top = mesh_object("table", [(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)],
                          [(0, 1, 2, 3)], bevel=False, smooth=False)
    else:
        verts, faces = shape_geometry("box", [2 * half, 2 * half, TABLE_THICKNESS])
        top = mesh_object("table", verts, faces, bevel=True, smooth=False)
        top.location = (0.0, 0.0, -TABLE_THICKNESS / 2)
    top.data.materials.append(emission("table", (1.0, 1.0, 1.0)) if mask else textured("table", look["table"]))
    leg_mat = black or principled("legs", look["table"]["rgb2"], 0.6, 0.3)
    for i, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
        verts, faces = shape_geometry("box", [0.05, 0.05, LEG_HEIGHT])
        leg = mesh_object(f"leg{i}", verts, faces, bevel=False, smooth=False)
        leg.location = (sx * (half - 0.05), sy * (half - 0.05), -TABLE_THICKNESS - LEG_HEIGHT / 2)
        leg.data.materials.append(leg_mat)
    floor_z = -TABLE_THICKNESS - LEG_HEIGHT
    floor = mesh_object("floor", [(-20, -20, floor_z), (20, -20, floor_z), (20, 20, floor_z), (-20, 20, floor_z)],
                        [(0, 1, 2, 3)], bevel=False, smooth=False)
    floor.data.materials.append(black or textured("floor", look["floor"]))

    for k, o in enumerate(spec["objects"]):
        curved = o["shape"] in ("sphere", "cylinder", "cone")
        verts, faces = shape_geometry(o["shape"], o["size"])
        obj = mesh_object(f"object{k}", verts, faces, bevel=o["shape"] != "sphere", smooth=curved)
        p = o["position"]
        obj.location = (p["x"], p["y"], p["z"])
        obj.rotation_euler = (0.0, 0.0, math.radians(o["yaw_deg"]))  # turn about +z, +x toward +y
        obj.data.materials.append(emission(f"mask{k}", MASK_COLORS[k]) if mask
                                  else principled(f"object{k}", o["rgb"], o["roughness"], o["specular"]))

    add_camera(spec["camera"])
    world = bpy.data.worlds.new("world")
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    if mask:
        bg.inputs["Strength"].default_value = 0.0
    else:
        bg.inputs["Color"].default_value = linear_rgba(look["ambient"]["rgb"])
        bg.inputs["Strength"].default_value = look["ambient"]["strength"]
        add_light(look["light"])
    configure_render(scene, spec, mode)


def add_camera(cam: dict) -> None:
    """Camera from the user's statement: position, ROS optical quaternion (x right, y down,
    z forward) in the table frame, pinhole fx = fy with the principal point at the centre."""
    w, h = cam["width"], cam["height"]
    if abs(cam["fx"] - cam["fy"]) > 1e-6 * cam["fx"]:
        raise ValueError(f"square pixels only: fx {cam['fx']} != fy {cam['fy']}")
    if abs(cam["cx"] - w / 2) > 1e-6 * w or abs(cam["cy"] - h / 2) > 1e-6 * h:
        raise ValueError(f"principal point must be the image centre ({w / 2}, {h / 2}), "
                         f"got ({cam['cx']}, {cam['cy']})")
    q = cam["orientation"]
    optical = quat_matrix(q["x"], q["y"], q["z"], q["w"])  # columns: optical axes in the table frame
    blender = optical @ np.diag([1.0, -1.0, -1.0])  # Blender's camera: x right, y up, looks along -z
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "VERTICAL" if w >= h else "HORIZONTAL"
    short, f = (h, cam["fy"]) if w >= h else (w, cam["fx"])
    data.angle = 2 * math.atan(short / 2 / f)
    data.clip_start, data.clip_end = 0.01, 100.0
    obj = bpy.data.objects.new("camera", data)
    bpy.context.scene.collection.objects.link(obj)
    p = cam["position"]
    m = Matrix.Identity(4)
    for i in range(3):
        for j in range(3):
            m[i][j] = float(blender[i, j])
        m[i][3] = float((p["x"], p["y"], p["z"])[i])
    obj.matrix_world = m
    bpy.context.scene.camera = obj
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0


def quat_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(x, y, z, w) quaternion -> (3, 3) rotation matrix."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def add_light(light: dict) -> None:
    """A sun (strength W/m^2, angular diameter angle_deg) or a square area light (power W,
    size_m, distance_m from the table centre), toward direction (azimuth, elevation)."""
    el, az = math.radians(light["elevation_deg"]), math.radians(light["azimuth_deg"])
    toward = Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))
    if light["type"] == "sun":
        data = bpy.data.lights.new("light", "SUN")
        data.energy = light["strength"]
        data.angle = math.radians(light["angle_deg"])
    else:
        data = bpy.data.lights.new("light", "AREA")
        data.energy = light["power"]
        data.size = light["size_m"]
    data.color = light["rgb"]
    obj = bpy.data.objects.new("light", data)
    bpy.context.scene.collection.objects.link(obj)
    obj.rotation_mode = "QUATERNION"
    obj.rotation_quaternion = toward.to_track_quat("Z", "Y")  # emits along -z, i.e. away from `toward`
    if light["type"] != "sun":
        obj.location = toward * light["distance_m"]


def configure_render(scene: bpy.types.Scene, spec: dict, mode: str) -> None:
    look = spec.get("look", {})
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.cycles.seed = int(look.get("seed", 0))
    if mode == "mask":
        scene.cycles.samples = 1
        scene.cycles.use_adaptive_sampling = False
        scene.cycles.use_denoising = False
        scene.cycles.filter_width = 0.01  # one ray through each pixel centre, as a rasteriser
        scene.cycles.max_bounces = 0
        scene.view_settings.exposure = 0.0
        return
    scene.cycles.samples = int(look["samples"])
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = 0.05
    scene.cycles.use_denoising = bool(look["denoise"])
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.max_bounces = 4
    scene.cycles.diffuse_bounces = 2
    scene.cycles.glossy_bounces = 2
    scene.cycles.transmission_bounces = 0
    scene.cycles.caustics_reflective = scene.cycles.caustics_refractive = False
    scene.view_settings.exposure = look["exposure"]


def add_sensor_noise(path: Path, sigma: float, seed: int) -> None:
    """Gaussian read noise of ``sigma`` (in [0, 1] display units) on the saved PNG."""
    img = bpy.data.images.load(str(path))
    px = np.empty(len(img.pixels), dtype=np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(-1, 4)
    rng = np.random.default_rng(seed)
    px[:, :3] = np.clip(px[:, :3] + rng.normal(0.0, sigma, (px.shape[0], 3)), 0.0, 1.0)
    img.pixels.foreach_set(px.ravel())
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def render(spec: dict, out: Path, mode: str, threads: int) -> float:
    """Render one spec to ``out / spec['file']``; returns seconds taken."""
    t = time.perf_counter()
    build_scene(spec, mode)
    scene = bpy.context.scene
    scene.render.threads_mode = "FIXED"
    scene.render.threads = threads
    path = out / spec["file"]
    tmp = path.with_name(path.stem + ".part.png")  # a crash never leaves a half-written PNG behind
    scene.render.filepath = str(tmp)
    bpy.ops.render.render(write_still=True)
    if mode == "photo" and spec["look"]["noise_sigma"] > 0:
        add_sensor_noise(tmp, spec["look"]["noise_sigma"], int(spec["look"]["seed"]))
    tmp.replace(path)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Render scene specs with Cycles (run in .venv-blender).")
    p.add_argument("--specs", type=Path, required=True, help="JSON list of scene specs")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    p.add_argument("--mode", choices=("photo", "mask"), default="photo", help="photo-like or flat masks")
    p.add_argument("--threads", type=int, default=1, help="Cycles CPU threads")
    args = p.parse_args(argv)
    specs = json.loads(args.specs.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        if (args.out / spec["file"]).exists():
            continue
        seconds = render(spec, args.out, args.mode, args.threads)
        print(f"rendered {spec['file']} {spec['camera']['width']}x{spec['camera']['height']} "
              f"{seconds:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
