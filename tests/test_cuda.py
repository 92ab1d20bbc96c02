"""The GPU path: the renderer, the predictor, the service and training on CUDA give what they give
on the CPU. Skipped where torch sees no CUDA device; ``bench/gpu/run.sh`` runs this module first
on a GPU machine (README, "On a GPU")."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch
from apiserver import LiveServer, settings_for
from PIL import Image

from app.config import DEFAULT_WEIGHTS
from inference.adapt import AdaptConfig, adapt, load_views
from inference.api import Predictor
from inference.checkpoint import load_weights
from renderer.appearance import default_look
from renderer.dataset import write_dataset
from renderer.photo import render_photo
from renderer.pinhole import spec_cameras
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.world import World
from training.train import main as train_main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (run bench/gpu/run.sh on a GPU machine)")

SAMPLES = Path(__file__).resolve().parents[1] / "app" / "static" / "samples"
WORLD = World()


def test_hard_and_soft_renders_on_cuda_match_the_cpu():
    scene = sample_scenes(WORLD, 8, seed=4)
    for mode in ("hard", "soft"):
        cpu = render(scene, WORLD, mode, 64, 64)
        gpu = render(scene.to("cuda"), WORLD, mode, 64, 64)
        assert gpu.device.type == "cuda"
        # the rasterisers may break a tie on an edge pixel differently, nothing more
        assert (gpu.cpu() - cpu).abs().mean() < 2e-3, mode


def test_soft_render_gradients_on_cuda_match_the_cpu():
    scene = sample_scenes(WORLD, 4, seed=5)

    def grads(device: str) -> torch.Tensor:
        s = scene.to(device)
        position = s.position.clone().requires_grad_(True)
        moved = type(s)(s.present, s.shape, s.color, position, s.yaw)
        render(moved, WORLD, "soft", 32, 32).mean().backward()
        return position.grad.cpu()

    cpu, gpu = grads("cpu"), grads("cuda")
    assert cpu.abs().sum() > 0
    assert torch.allclose(gpu, cpu, rtol=0.05, atol=1e-3 * float(cpu.abs().max()))


def test_the_predictor_on_cuda_answers_as_on_the_cpu():
    images = [Image.open(SAMPLES / s["file"]).convert("RGB")
              for s in json.loads((SAMPLES / "samples.json").read_text())]
    cpu = Predictor.load(DEFAULT_WEIGHTS, "cpu").infer(images)
    gpu_predictor = Predictor.load(DEFAULT_WEIGHTS, "cuda")
    assert gpu_predictor.device.type == "cuda"
    gpu = gpu_predictor.infer(images)
    for a, b in zip(cpu, gpu, strict=True):
        assert a["count"] == b["count"]
        for oa, ob in zip(a["objects"], b["objects"], strict=True):
            assert (oa["shape"], oa["color"]) == (ob["shape"], ob["color"])
            assert all(abs(oa["position"][k] - ob["position"][k]) < 0.005 for k in "xyz")  # 5 mm


def test_the_service_on_cuda_answers_infer_render_and_refine():
    with LiveServer(settings_for(DEFAULT_WEIGHTS, device="cuda")) as server:
        sample = (SAMPLES / "sample-1.png").read_bytes()
        answer = httpx.post(server.url + "/infer", content=sample, headers={"content-type": "image/png"},
                            timeout=60).json()
        assert answer["model"]["device"].startswith("cuda") and answer["count"] >= 1
        refined = httpx.post(server.url + "/infer?refine=5", content=sample, headers={"content-type": "image/png"},
                             timeout=60)
        assert refined.status_code == 200 and refined.json()["count"] >= 1
        scene = {"objects": [{"shape": o["shape"], "color": o["color"], "position": o["position"],
                              "yaw_deg": o["yaw_deg"]} for o in answer["objects"]]}
        png = httpx.post(server.url + "/render", json=scene, timeout=60)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"


@pytest.mark.parametrize("flags", [[], ["--objective=elbo", "--elbo_enumerate=True"]], ids=["amortised", "elbo"])
def test_training_on_cuda_runs_resumes_and_exports_cpu_loadable_weights(tmp_path, flags):
    write_dataset(tmp_path / "train", 16, seed=0, world=WORLD, chunk=16, progress=False)
    write_dataset(tmp_path / "val", 4, seed=1, world=WORLD, chunk=4, progress=False)
    common = ["--channels=8", "--hidden=16", "--batch_size=4", "--warmup_iters=1", "--log_interval=1",
              "--eval_interval=2", "--eval_scenes=4", "--device=cuda", f"--data={tmp_path / 'train'}",
              f"--val_data={tmp_path / 'val'}", f"--out_dir={tmp_path / 'run'}",
              f"--export={tmp_path / 'w.safetensors'}", *flags]
    assert train_main(common + ["--max_iters=2"]) == 0
    assert train_main(common + ["--max_iters=4", "--resume=True"]) == 0
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # a header, then one row per step
    model, _, _ = load_weights(tmp_path / "w.safetensors", "cpu")
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in model.parameters())


def test_adaptation_on_cuda_runs_resumes_and_writes_cpu_servable_weights(tmp_path):
    n = 6
    _, world, _ = load_weights(DEFAULT_WEIGHTS)
    cams = spec_cameras(world.camera, n, 128, 128)
    g = torch.Generator().manual_seed(5)
    scenes = sample_scenes(world, n, generator=g, cameras=[cams])
    photos = render_photo(scenes, world, cams, default_look(world, n), g)  # (B, H, W, 3)
    for i, img in enumerate((photos * 255).round().byte().numpy()):
        Image.fromarray(img).save(tmp_path / f"{i:02d}.png")
    views = load_views(sorted(tmp_path.glob("*.png")), world)
    cfg = AdaptConfig(steps=4, batch=4, look_steps=1, checkpoint_every=1, threads=1, size=40, device="cuda")
    out = tmp_path / "mine.safetensors"
    half = adapt(views, DEFAULT_WEIGHTS, out, replace(cfg, steps=2), progress=False)
    done = adapt(views, DEFAULT_WEIGHTS, out, cfg, progress=False)
    assert (half["steps"], done["steps"]) == (2, 4) and done["look"]["noise_std"] > 0
    model, _, meta = load_weights(out, "cpu")
    assert meta["adapted"]["config"]["device"] == "cuda"
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in model.parameters())
    answers = Predictor.load(out, "cpu").infer([Image.open(tmp_path / "00.png")])
    assert answers[0]["count"] == len(answers[0]["objects"])
