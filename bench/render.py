"""Rendering speed: the batched renderer against the naive PyTorch3D way, in one run.

    python -m bench.render            # full run, a few minutes on a 2-core CPU
    python -m bench.render --quick    # fewer repetitions
    python -m bench.render --threads 1  # one torch thread (steadier when other jobs share the CPU)
    python -m bench.render --device cuda --batches 1,32,256   # on a GPU (bench/gpu/run.sh)

For each mode (``hard`` forward, ``soft`` forward, ``soft`` forward+backward), image size
(64, 256) and batch size (1, 32) it renders the same prior scenes (three objects each) twice:

- batched: ``renderer.render`` (fixed, padded topology; vertices moved in one operation);
- naive: per image, a PyTorch3D ``Meshes`` built from Python lists (one entry per object plus
  the table, ``TexturesVertex`` colours), the images joined with ``join_meshes_as_batch`` and
  drawn by ``MeshRenderer`` with ``HardPhongShader`` / ``SoftPhongShader`` under a
  ``DirectionalLights``. Same camera, image size, blur and faces per pixel; the blend is
  PyTorch3D's own (``softmax_rgb_blend``, default gamma), which costs about what ours does.

Every timing warms up once, then repeats and reports the median; images/s = batch / median.
(The slowest row, soft forward+backward at 256x256 batch 32, warms up on one image.)
The backward pass is of ``image.mean()`` with respect to position and yaw.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytorch3d
import torch
from pytorch3d.renderer import (
    DirectionalLights,
    HardPhongShader,
    MeshRasterizer,
    MeshRenderer,
    RasterizationSettings,
    SoftPhongShader,
    TexturesVertex,
)
from pytorch3d.renderer.blending import BlendParams
from pytorch3d.structures import Meshes, join_meshes_as_batch

from renderer.camera import p3d_cameras
from renderer.meshes import primitive
from renderer.prior import sample_scenes
from renderer.render import RasterSettings, render
from renderer.scene import SceneBatch
from renderer.world import World

SIZES = (64, 256)
BATCHES = (1, 32)
OBJECTS = 3
BLUR_SIGMA_PX = 0.5  # render()'s soft defaults, matched by the naive path
FACES_PER_PIXEL = 6


@dataclass(frozen=True)
class Case:
    """One row of the table: what is rendered and how often it is timed."""

    mode: str  # "hard", "soft" (forward only) or "soft+bwd"
    size: int  # image side in pixels
    batch: int  # scenes per call
    reps: int  # timed repetitions after one warm-up call
    warmup_batch: int | None = None  # scenes in the warm-up call (default: batch)


def naive_renderer(world: World, mode: str, size: int, batch: int, device: str = "cpu") -> MeshRenderer:
    """PyTorch3D's stock parts for ``batch`` images of ``size`` x ``size`` on ``device``."""
    cameras = p3d_cameras(world, batch, device)
    light = world.light
    lights = DirectionalLights(
        direction=(light.direction,), ambient_color=((light.ambient,) * 3,),
        diffuse_color=((light.diffuse,) * 3,), specular_color=((0.0, 0.0, 0.0),), device=device,
    )
    if mode == "hard":
        raster = RasterizationSettings(image_size=size, faces_per_pixel=1, bin_size=0)
        shader = HardPhongShader(cameras=cameras, lights=lights,
                                 blend_params=BlendParams(background_color=world.background_rgb))
    else:
        settings = RasterSettings(size, size, FACES_PER_PIXEL, BLUR_SIGMA_PX)
        raster = RasterizationSettings(image_size=size, faces_per_pixel=FACES_PER_PIXEL, bin_size=0,
                                       blur_radius=settings.blur_radius)
        shader = SoftPhongShader(cameras=cameras, lights=lights, blend_params=BlendParams(
            sigma=settings.sigma_ndc2, background_color=world.background_rgb))
    return MeshRenderer(MeshRasterizer(cameras=cameras, raster_settings=raster), shader).to(device)  # materials too


def naive_meshes(scene: SceneBatch, world: World) -> Meshes:
    """One ``Meshes`` per image from Python lists, joined into a batch (the way we avoid)."""
    templates = [primitive(s) for s in world.shapes]
    half = world.table_size / 2
    table_v = torch.tensor([[-half, -half, 0.0], [half, -half, 0.0], [half, half, 0.0], [-half, half, 0.0]])
    table_f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    per_image = []
    for b in range(scene.batch_size):
        verts, faces, colors, offset = [], [], [], 0
        for i in range(scene.num_slots):
            if not scene.present[b, i]:
                continue
            v, f = templates[int(scene.shape[b, i])]
            c, s = torch.cos(scene.yaw[b, i]), torch.sin(scene.yaw[b, i])
            rot = torch.stack([torch.stack([c, -s, torch.zeros_like(c)]), torch.stack([s, c, torch.zeros_like(c)]),
                               torch.tensor([0.0, 0.0, 1.0])])
            verts.append(v @ rot.T + scene.position[b, i])
            faces.append(f + offset)
            colors.append(torch.tensor(world.colors[int(scene.color[b, i])].rgb).expand(v.shape[0], 3))
            offset += v.shape[0]
        verts.append(table_v)
        faces.append(table_f + offset)
        colors.append(torch.tensor(world.table_rgb).expand(4, 3))
        per_image.append(Meshes(verts=[torch.cat(verts)], faces=[torch.cat(faces)],
                                textures=TexturesVertex(verts_features=[torch.cat(colors)])))
    return join_meshes_as_batch(per_image)


def step_fn(case: Case, world: World, naive: bool, device: str = "cpu") -> Callable[[], None]:
    """A closure doing one timed call of ``case``, batched or naive, on ``device`` (the naive
    way builds its meshes from Python lists on the CPU and moves them, as such code does)."""
    scene = sample_scenes(world, case.batch, seed=0, counts=OBJECTS).to(device)
    mode = "hard" if case.mode == "hard" else "soft"
    backward = case.mode == "soft+bwd"
    renderer = naive_renderer(world, mode, case.size, case.batch, device) if naive else None

    def draw(s: SceneBatch) -> torch.Tensor:
        if naive:
            return renderer(naive_meshes(s.to("cpu"), world).to(device))[..., :3]
        return render(s, world, mode, case.size, case.size, BLUR_SIGMA_PX, FACES_PER_PIXEL)

    def step() -> None:
        if not backward:
            with torch.no_grad():
                draw(scene)
        else:
            position = scene.position.clone().requires_grad_()
            yaw = scene.yaw.clone().requires_grad_()
            draw(SceneBatch(scene.present, scene.shape, scene.color, position, yaw)).mean().backward()
        if scene.position.device.type == "cuda":
            torch.cuda.synchronize()  # the time is the work's, not the launch's

    return step


def time_images_per_s(case: Case, world: World, naive: bool, device: str = "cpu") -> float:
    """Warm up once (caches, allocator, lazy initialisation), then the median of ``case.reps`` calls."""
    warmup = case if case.warmup_batch is None else replace(case, batch=case.warmup_batch)
    step_fn(warmup, world, naive, device)()
    step = step_fn(case, world, naive, device)
    times = []
    for _ in range(case.reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return case.batch / statistics.median(times)


def cases(quick: bool, batches: tuple[int, ...] = BATCHES) -> list[Case]:
    """All rows, with fewer repetitions for the slow ones. Soft backward at 256x256 runs at
    ~0.5 images/s on 2 cores (PyTorch3D's CPU backward is single-threaded): its batch-32 row is
    timed once, after a one-image warm-up, or it alone would take ten minutes."""
    out = []
    for mode in ("hard", "soft", "soft+bwd"):
        for size in SIZES:
            for batch in batches:
                heavy = {"hard": 0, "soft": 1, "soft+bwd": 2}[mode] + (size > 64) + (batch > 1)
                reps = {0: 20, 1: 10, 2: 5, 3: 3, 4: 1}[heavy]
                if quick:
                    reps = max(1, reps // 4)
                out.append(Case(mode, size, batch, reps, warmup_batch=1 if heavy == 4 else None))
    return out


def machine(device: str = "cpu") -> str:
    model = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device != "cpu":
        model = f"{torch.cuda.get_device_name(device)} ({device}); host {model}"
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__} (threads: {torch.get_num_threads()}), "
            f"pytorch3d {pytorch3d.__version__}, Python {platform.python_version()}")


def main(quick: bool = False, threads: int | None = None, device: str = "cpu", batches: str = "1,32") -> int:
    if threads is not None:
        torch.set_num_threads(threads)
    world = World()
    print(f"machine: {machine(device)}")
    print(f"scenes: prior samples with {OBJECTS} objects; soft: blur {BLUR_SIGMA_PX} px, "
          f"{FACES_PER_PIXEL} faces per pixel; median of N timed calls after one warm-up; "
          f"load average before the run: {os.getloadavg()[0]:.2f}\n")
    print("| mode | size | batch | batched img/s | naive img/s | batched / naive | N |")
    print("|---|---|---|---:|---:|---:|---:|")
    for case in cases(quick, tuple(int(b) for b in batches.split(","))):
        ours = time_images_per_s(case, world, naive=False, device=device)
        theirs = time_images_per_s(case, world, naive=True, device=device)
        mode = {"hard": "hard fwd", "soft": "soft fwd", "soft+bwd": "soft fwd+bwd"}[case.mode]
        print(f"| {mode} | {case.size}x{case.size} | {case.batch} | {ours:.1f} | {theirs:.1f} | "
              f"{ours / theirs:.2f}x | {case.reps} |", flush=True)
    print(f"\nload average after the run: {os.getloadavg()[0]:.2f} (the bench itself counts up to 2 here)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Images/s of the batched renderer beside the naive PyTorch3D way.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a rough number, faster)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice, one per core)")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (or 'cuda:N')")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default 1,32)")
    sys.exit(main(**vars(parser.parse_args())))
