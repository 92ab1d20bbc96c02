"""DAIR's teacher-forced canvases, rendered once per dataset.

Teacher-forced DAIR training shows step t the image minus a ``hard`` rendering of the true
objects in slots < t, nearest to the camera first (``objectives.dair_residuals``). Rendering
those per batch costs about a third of a training step on the CPU (model card), and they
depend only on the scene, so this renders them once and training reads them back
(``CanvasStore.residuals``).

Pose jitter, against exposure bias: at inference DAIR subtracts a rendering of its *own* finds,
off by a few millimetres and a degree or two, which leaves thin slivers of colour at object edges; residuals rendered from
the exact truth never show them, so a network trained only on those may read a sliver as one
more object. With ``jitter_cm`` / ``jitter_deg`` each canvas object's table position and yaw are
drawn once per scene from a Gaussian around the truth (per axis), so training sees the slivers.

    python -m training.dair_canvas --data data/train --out data/train-canvas-j25 --jitter_cm 0.25 --jitter_deg 2

Layout of ``--out``: ``canvas.npy`` (M, N - 1, S, S, 3) uint8, row i = scene i of the dataset,
entry t - 1 = the canvas step t subtracts (t = 1 .. N - 1; step 0 subtracts the empty table,
not stored); ``meta.json`` (settings, dataset, scenes done). An interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm import tqdm

from training.objectives import earlier_slots, nearest_first
from inference.infer import table_image
from renderer.dataset import SceneDataset
from renderer.render import render
from renderer.scene import SceneBatch
from renderer.world import World

CHUNK = 512  # scenes rendered and flushed per step


def jittered(scene: SceneBatch, jitter_cm: float, jitter_deg: float, generator: torch.Generator) -> SceneBatch:
    """The same scenes with each object's table position (x, y) and yaw moved by Gaussian noise
    of standard deviation ``jitter_cm`` centimetres (per axis) and ``jitter_deg`` degrees; height,
    shape and colour kept."""
    b, n = scene.present.shape
    dxy = torch.randn(b, n, 2, generator=generator) * (jitter_cm / 100.0)
    dyaw = torch.randn(b, n, generator=generator) * math.radians(jitter_deg)
    position = scene.position.clone()
    position[..., :2] += dxy
    return SceneBatch(scene.present, scene.shape, scene.color, position, scene.yaw + dyaw)


@torch.no_grad()
def render_canvases(scene: SceneBatch, world: World, size: int) -> torch.Tensor:
    """(B, N - 1, S, S, 3) uint8: canvas t - 1 renders the objects in slots < t (t = 1 .. N - 1)
    ``hard`` at S x S. The scene's slot order is the one training uses (``nearest_first``)."""
    out = [render(earlier_slots(scene, t), world, "hard", size, size) for t in range(1, scene.num_slots)]
    return (torch.stack(out, dim=1).clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass(frozen=True)
class CanvasStore:
    """Canvases of one dataset, opened read-only (``canvas``: (M, N - 1, S, S, 3) uint8) and
    the empty table step 0 subtracts (``table``: (1, 3, S, S) float in [0, 1], rendered once)."""

    root: Path
    canvas: np.ndarray
    meta: dict
    table: torch.Tensor

    @classmethod
    def open(cls, root: str | Path, data: SceneDataset) -> CanvasStore:
        """Open ``root`` and check it was made from ``data`` and covers every scene it has."""
        root = Path(root)
        if not (root / "meta.json").exists():
            raise ValueError(f"{root} holds no canvases (make them with python -m training.dair_canvas)")
        meta = json.loads((root / "meta.json").read_text())
        if meta["dataset"] != str(data.root) or meta["world"] != data.meta["world"]:
            raise ValueError(f"{root} was made from {meta['dataset']}, not {data.root}")
        if meta["done"] < len(data):
            raise ValueError(f"{root} has canvases for {meta['done']} of {len(data)} scenes; rerun the command")
        size = data.world.image_size
        table = table_image(data.world, 1, torch.zeros(1, 3, size, size)).clone()
        return cls(root, np.load(root / "canvas.npy", mmap_mode="r"), meta, table)

    def residuals(self, images: torch.Tensor, index: np.ndarray) -> list[torch.Tensor]:
        """DAIR's per-step inputs for the dataset scenes ``index`` (as ``dair_residuals`` makes them
        for the scenes in nearest-first order): images (B, 3, S, S) in [0, 1] -> N tensors
        (B, 3, S, S), on the images' device."""
        canvas = torch.from_numpy(np.array(self.canvas[index])).permute(0, 1, 4, 2, 3).to(images.device).float() / 255
        return [images - self.table.to(images.device)] + [images - canvas[:, t] for t in range(canvas.shape[1])]


def write_canvases(data: SceneDataset, out: Path, jitter_cm: float = 0.0, jitter_deg: float = 0.0, seed: int = 0,
                   progress: bool = True) -> Path:
    """Render the canvases of every scene of ``data`` into ``out``, resuming a partial run made
    with the same settings."""
    if jitter_cm < 0 or jitter_deg < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter_cm} cm, {jitter_deg} deg")
    world = data.world
    count, size, n = len(data), world.image_size, world.max_objects
    settings = {"dataset": str(data.root), "count": count, "jitter_cm": jitter_cm, "jitter_deg": jitter_deg,
                "seed": seed, "order": "nearest_first", "world": data.meta["world"]}
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta[k] for k in settings} != json.loads(json.dumps(settings)):
            raise ValueError(f"{out} holds canvases made with other settings; choose another --out")
        canvas = np.load(out / "canvas.npy", mmap_mode="r+")
    else:
        meta = {**settings, "done": 0}
        canvas = open_memmap(out / "canvas.npy", mode="w+", dtype=np.uint8, shape=(count, n - 1, size, size, 3))
    bar = tqdm(total=count, initial=meta["done"], unit="scene", desc=f"canvases {out}", disable=not progress)
    while meta["done"] < count:
        lo = meta["done"]
        hi = min(count, lo + CHUNK)
        scene = nearest_first(data.scenes(slice(lo, hi)))
        if jitter_cm > 0 or jitter_deg > 0:  # one generator per chunk: a resumed run draws the same jitter
            scene = jittered(scene, jitter_cm, jitter_deg, torch.Generator().manual_seed(seed * 1_000_003 + lo))
        canvas[lo:hi] = render_canvases(scene, world, size).numpy()
        canvas.flush()
        meta["done"] = hi
        meta_path.with_suffix(".tmp").write_text(json.dumps(meta, indent=1))
        meta_path.with_suffix(".tmp").replace(meta_path)
        bar.update(hi - lo)
    bar.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Render DAIR's teacher-forced canvases of a dataset once.")
    p.add_argument("--data", required=True, help="rendered dataset (python -m renderer.dataset)")
    p.add_argument("--out", required=True, type=Path, help="directory for canvas.npy and meta.json")
    p.add_argument("--jitter_cm", type=float, default=0.0,
                   help="std of the canvas objects' position noise per axis, cm")
    p.add_argument("--jitter_deg", type=float, default=0.0, help="std of the canvas objects' yaw noise, degrees")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        write_canvases(SceneDataset.open(args.data), args.out, args.jitter_cm, args.jitter_deg, args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
