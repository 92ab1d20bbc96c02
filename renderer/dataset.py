"""Render a reproducible dataset of prior samples to disk, streamable without copies.

    python -m renderer.dataset --count 100000 --seed 0 --out data/train
    python -m renderer.dataset --photo --count 150000 --seed 1 --out data/photo-train --image-size 80

Layout of ``OUT/``:
    meta.json      world config, seed, count, chunk size, supersampling, ``done`` (scenes written)
    images.npy     (count, H, W, 3) uint8, H = W = world.image_size
    present.npy    (count, N) bool        shape.npy (count, N) int64     color.npy (count, N) int64
    position.npy   (count, N, 3) float32  yaw.npy   (count, N) float32
    photo datasets also: camera.npy (count, 16) float32 (``pack_cameras``: each image's camera)
                         image_hw.npy (count, 2) int32 (the size that camera's image has)

Each ``.npy`` opens with ``numpy.load(path, mmap_mode="r")``, so training streams from the
page cache instead of holding a second copy. Scenes are drawn chunk by chunk, chunk ``i`` from
its own generator seeded with ``seed * 1_000_003 + i``: a dataset is the same whatever the
chunk it was resumed from. Rendering is ``hard``, at ``supersample`` times the size and
box-filtered down, so edges are anti-aliased like a resized camera image. With ``--photo``
(``PhotoData``) each image is instead the network's canonical view of a camera drawn from the
world's envelope, under a look drawn from the look prior (``renderer.photo``), black where that
camera's own image does not reach.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm import tqdm

from renderer.appearance import OPTIONAL_DRAWS, LookPrior, default_look, sample_looks, shade_palette
from renderer.photo import photo_jpeg
from renderer.pinhole import Cameras, canonical_cameras, coverage, sample_cameras, spec_cameras
from renderer.prior import sample_scenes
from renderer.render import render_antialiased
from renderer.scene import SceneBatch
from renderer.world import World

FIELDS = ("present", "shape", "color", "position", "yaw")
CAMERA_FIELDS = ("camera", "image_hw")  # photo datasets: each image's own camera


def pack_cameras(cams: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """Cameras -> ((B, 16) float32 [position 3, rotation 9 row-major, focal 2, principal 2],
    (B, 2) int32 [height, width])."""
    b = cams.batch_size
    flat = torch.cat([cams.position, cams.rotation.reshape(b, 9), cams.focal, cams.principal], dim=1)
    hw = np.tile(np.array([[cams.height, cams.width]], dtype=np.int32), (b, 1))
    return flat.float().numpy(), hw


def unpack_cameras(flat: np.ndarray, hw: np.ndarray) -> list[tuple[np.ndarray, Cameras]]:
    """Inverse of ``pack_cameras`` for rows that may differ in image size: a list of
    (row indices, Cameras) groups, one per distinct size."""
    t = torch.from_numpy(np.asarray(flat, dtype=np.float32))
    out = []
    for h, w in sorted({(int(a), int(b)) for a, b in np.asarray(hw)}):
        idx = np.nonzero((hw[:, 0] == h) & (hw[:, 1] == w))[0]
        r = t[idx]
        out.append((idx, Cameras(r[:, :3], r[:, 3:12].reshape(-1, 3, 3), r[:, 12:14], r[:, 14:16], h, w)))
    return out


def render_images(scene: SceneBatch, world: World, supersample: int = 2) -> torch.Tensor:
    """Hard render at ``supersample`` x the world's image size, box-filtered: (B, S, S, 3) uint8."""
    with torch.no_grad():
        img = render_antialiased(scene, world, supersample=supersample)
    return (img * 255).round().to(torch.uint8)


def chunk_scenes(world: World, seed: int, chunk: int, size: int, counts=None) -> SceneBatch:
    return sample_scenes(world, size, seed=seed * 1_000_003 + chunk, counts=counts)


@dataclass(frozen=True)
class PhotoData:
    """How a photo dataset draws its images: the world's cameras and looks as distributions,
    each image the network's canonical view (``renderer.pinhole.canonical_cameras``, side
    ``world.image_size``) of a camera drawn from ``world.envelope``, black where that camera's
    own image does not reach.

    look: the look prior. image_sizes: (height, width) of the camera images, one drawn per
        chunk (only their aspect matters: the views are rendered at the network's size).
    default_camera, default_look: chance (per chunk) of the world's fixed camera, and
        independently of its fixed look, so the original world stays in the data.
    details: tessellation levels of curved shapes, one drawn per chunk.
    supersample: render at this many times the size, then box-filter.
    """

    look: LookPrior = LookPrior()
    image_sizes: tuple[tuple[int, int], ...] = ((480, 480), (480, 640), (360, 640), (640, 480))
    default_camera: float = 0.1
    default_look: float = 0.1
    details: tuple[int, ...] = (1, 2, 3)
    supersample: int = 2

    def to_dict(self) -> dict:
        d = json.loads(json.dumps(asdict(self)))
        for chance, keys in OPTIONAL_DRAWS.items():
            if not getattr(self.look, chance):  # draws nothing: sets made before it resume as they were
                for k in keys:
                    d["look"].pop(k)
        return d


def photo_chunk(world: World, data: PhotoData, seed: int, chunk: int, size: int,
                counts=None) -> tuple[np.ndarray, SceneBatch, Cameras]:
    """Chunk ``chunk`` of a photo dataset: (size, S, S, 3) uint8 views, their scenes, and the
    cameras they were seen by. Drawn from its own generator (seed * 1_000_003 + chunk)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + chunk)
    pick = lambda n: int(torch.randint(n, (1,), generator=g))  # noqa: E731
    fixed_camera = float(torch.rand(1, generator=g)) < data.default_camera
    fixed_look = float(torch.rand(1, generator=g)) < data.default_look
    h, w = data.image_sizes[pick(len(data.image_sizes))]
    detail = 1 if fixed_look else data.details[pick(len(data.details))]
    cams = spec_cameras(world.camera, size, h, w) if fixed_camera else sample_cameras(world.envelope, size, g, h, w)
    view = canonical_cameras(cams.position, world.image_size, world.view_half_width)
    scene = sample_scenes(world, size, generator=g, counts=counts, cameras=(cams, view))
    look = default_look(world, size) if fixed_look else sample_looks(data.look, size, g)
    shaded = scene if fixed_look else replace(scene, albedo=shade_palette(scene, world, data.look, g))
    u8 = photo_jpeg(shaded, world, view, look, g, detail, data.supersample)
    u8 = u8 * coverage(cams, view).numpy()[..., None]
    return u8, scene, cams


@dataclass
class SceneDataset:
    """A rendered dataset opened read-only by memory map. ``len()`` is the scenes written."""

    root: Path
    images: np.ndarray
    latents: dict[str, np.ndarray]
    meta: dict

    @classmethod
    def open(cls, root: str | Path) -> SceneDataset:
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise ValueError(f"{root} is not a dataset: no meta.json (make one with python -m renderer.dataset)")
        meta = json.loads(meta_path.read_text())
        images = np.load(root / "images.npy", mmap_mode="r")
        latents = {f: np.load(root / f"{f}.npy", mmap_mode="r") for f in FIELDS}
        if "photo" in meta:
            latents.update({f: np.load(root / f"{f}.npy", mmap_mode="r") for f in CAMERA_FIELDS})
        return cls(root, images, latents, meta)

    @property
    def world(self) -> World:
        return World.from_dict(self.meta["world"])

    def __len__(self) -> int:
        return int(self.meta["done"])

    def refresh(self) -> int:
        """Re-read how many scenes are written (a dataset can be read while it is rendered)."""
        self.meta = json.loads((self.root / "meta.json").read_text())
        return len(self)

    @property
    def has_cameras(self) -> bool:
        """Whether each image has its own camera (a photo dataset)."""
        return "camera" in self.latents

    def cameras(self, index: np.ndarray) -> list[tuple[np.ndarray, Cameras]]:
        """The cameras of scenes ``index`` (an index array), grouped by image size: a list of
        (positions within ``index``, Cameras). Only for photo datasets."""
        if not self.has_cameras:
            raise ValueError(f"{self.root} has no per-image cameras (not made with --photo)")
        index = np.asarray(index)
        return unpack_cameras(self.latents["camera"][index], self.latents["image_hw"][index])

    def scenes(self, index: np.ndarray | slice) -> SceneBatch:
        # np.array copies: the maps are read-only, and a tensor viewing them must not be written.
        t = {f: torch.from_numpy(np.array(self.latents[f][index])) for f in FIELDS}
        return SceneBatch(t["present"], t["shape"], t["color"], t["position"], t["yaw"])


def render_chunk(world: World, seed: int, ci: int, chunk: int, take: int, supersample: int,
                 counts: list[int] | None, photo: PhotoData | None, threads: int = 0) -> dict[str, np.ndarray]:
    """Chunk ``ci``'s arrays (its first ``take`` scenes), by name as in the dataset's files: a
    pure function of its arguments, so any process renders the same bytes (at the same torch
    thread count, ``threads``; 0 leaves it as it is)."""
    if threads:
        torch.set_num_threads(threads)
    if photo is None:
        scene = chunk_scenes(world, seed, ci, chunk, counts).select(slice(0, take))
        out = {"images": render_images(scene, world, supersample).numpy()}
    else:
        images, scene, cams = photo_chunk(world, photo, seed, ci, chunk, counts)
        scene = scene.select(slice(0, take))
        flat, hw = pack_cameras(cams.select(slice(0, take)))
        out = {"images": images[:take], "camera": flat, "image_hw": hw}
    return {**out, **{f: getattr(scene, f).numpy() for f in FIELDS}}


def local_chunks(args: list[tuple]) -> Iterator[dict[str, np.ndarray]]:
    """``render_chunk`` on each argument tuple, in this process, in order."""
    for a in args:
        yield render_chunk(*a)


def write_dataset(out: Path, count: int, seed: int, world: World, chunk: int = 256,
                  supersample: int = 2, counts: list[int] | None = None, progress: bool = True,
                  photo: PhotoData | None = None,
                  chunks: Callable[[list[tuple]], Iterator[dict[str, np.ndarray]]] = local_chunks) -> Path:
    """Render ``count`` scenes into ``out``, resuming a partial run made with the same settings.
    ``photo``: draw cameras and looks (``photo_chunk``) instead of the world's fixed ones; the
    dataset then also holds each image's camera (``CAMERA_FIELDS``). ``chunks`` renders the
    chunks still to do, yielding their arrays in order: ``local_chunks``, or across a Ray
    cluster (``renderer.ray_render.ray_chunks``); the files are the same either way."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    settings = {"count": count, "seed": seed, "chunk": chunk, "supersample": supersample,
                "counts": counts, "world": world.to_dict()}
    if photo is not None:
        settings["photo"] = photo.to_dict()
    size, n = world.image_size, world.max_objects
    shapes = {"images": ((count, size, size, 3), np.uint8), "present": ((count, n), np.bool_),
              "shape": ((count, n), np.int64), "color": ((count, n), np.int64),
              "position": ((count, n, 3), np.float32), "yaw": ((count, n), np.float32)}
    if photo is not None:
        shapes.update(camera=((count, 16), np.float32), image_hw=((count, 2), np.int32))
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta[k] for k in settings} != json.loads(json.dumps(settings)):
            raise ValueError(f"{out} holds a dataset made with other settings; choose another --out")
        arrays = {k: np.load(out / f"{k}.npy", mmap_mode="r+") for k in shapes}
    else:
        meta = {**settings, "done": 0}
        arrays = {k: open_memmap(out / f"{k}.npy", mode="w+", dtype=dt, shape=shp) for k, (shp, dt) in shapes.items()}
    done = meta["done"]
    bar = tqdm(total=count, initial=done, unit="img", desc=f"render {out}", disable=not progress)
    threads = torch.get_num_threads()
    todo = [(world, seed, ci, chunk, min(chunk, count - ci * chunk), supersample, counts, photo, threads)
            for ci in range(done // chunk, -(-count // chunk) if done < count else 0)]
    for args, part in zip(todo, chunks(todo)):
        ci, take = args[2], args[4]
        lo = ci * chunk
        for name, value in part.items():
            arrays[name][lo : lo + take] = value
        for a in arrays.values():
            a.flush()
        done = lo + take
        meta["done"] = done
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(meta_path)
        bar.update(take)
    bar.close()
    return out


def reduced_world(world: World, max_objects: int | None = None, image_size: int | None = None,
                  shapes: str | None = None, colors: str | None = None) -> World:
    """The world with some settings overridden; shapes/colours as comma-separated names."""
    changes: dict = {}
    if max_objects is not None:
        changes["max_objects"] = max_objects
    if image_size is not None:
        changes["image_size"] = image_size
    if shapes is not None:
        changes["shapes"] = tuple(world.shapes[world.shape_index(n)] for n in shapes.split(","))
    if colors is not None:
        changes["colors"] = tuple(world.colors[world.color_index(n)] for n in colors.split(","))
    return world.with_(**changes)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, required=True, help="number of scenes to render")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene prior")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumes if it holds a partial run)")
    p.add_argument("--chunk", type=int, default=256, help="scenes rendered per batch")
    p.add_argument("--supersample", type=int, default=2, help="render at this many times the size, then box-filter")
    p.add_argument("--counts", type=str, default=None,
                   help="comma-separated object counts to draw from (default 0..N), e.g. 0,1,2")
    p.add_argument("--max-objects", type=int, default=None, help="override the world's N")
    p.add_argument("--image-size", type=int, default=None, help="override the world's image size")
    p.add_argument("--shapes", type=str, default=None, help="comma-separated subset of the shapes, e.g. cube,sphere")
    p.add_argument("--colors", type=str, default=None, help="comma-separated subset of the colours, e.g. red,blue")
    p.add_argument("--photo", action="store_true",
                   help="draw cameras from the world's envelope and looks from the look prior (PhotoData); "
                        "images are the network's canonical views")
    p.add_argument("--cast-shadows", type=float, default=0.0, metavar="P",
                   help="with --photo: chance that an image's key light casts ray-traced shadows instead of the "
                        "contact blob (LookPrior.cast_shadow_probability)")
    p.add_argument("--harsh", type=float, default=0.0, metavar="P",
                   help="with --photo: chance that an image is taken with the sensor at its limits, dim or "
                        "overexposed and noisy (LookPrior.harsh_probability)")
    p.add_argument("--colour", type=float, default=0.0, metavar="P",
                   help="with --photo: chance that an image's camera renders colour off its calibration: white "
                        "balance, tone curve, saturation, veiling glare (LookPrior.colour_probability)")
    p.add_argument("--apex", type=float, default=0.0, metavar="P",
                   help="with --photo: chance that a smooth-shaded image's cones have their apex shaded as a mesh "
                        "with per-vertex normals shades it (LookPrior.apex_probability)")
    p.add_argument("--welded", type=float, default=0.0, metavar="P",
                   help="with --photo: chance that a smooth-shaded image's meshes have every edge soft, vertex "
                        "normals averaged as mesh tools do by default (LookPrior.welded_probability)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="render the chunks as Ray tasks: on a cluster at ADDRESS ('auto', 'ray://host:10001'), "
                        "or, without one, on a local cluster started here (needs the 'ray' extra); the files "
                        "are the same as without")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        world = reduced_world(World(), args.max_objects, args.image_size, args.shapes, args.colors)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for flag, chance in (("--cast-shadows", args.cast_shadows), ("--harsh", args.harsh), ("--colour", args.colour),
                         ("--apex", args.apex), ("--welded", args.welded)):
        if not 0.0 <= chance <= 1.0 or (chance and not args.photo):
            print(f"error: {flag} takes a chance in [0, 1], with --photo", file=sys.stderr)
            return 2
    counts = None if args.counts is None else [int(c) for c in args.counts.split(",")]
    try:
        chunks = local_chunks
        if args.ray is not None:
            from renderer.ray_render import ray_chunks

            chunks = ray_chunks(None if args.ray == "local" else args.ray)
        write_dataset(args.out, args.count, args.seed, world, args.chunk, args.supersample, counts,
                      photo=PhotoData(LookPrior(cast_shadow_probability=args.cast_shadows,
                                                harsh_probability=args.harsh, colour_probability=args.colour,
                                                apex_probability=args.apex, welded_probability=args.welded),
                                      supersample=args.supersample) if args.photo else None, chunks=chunks)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
