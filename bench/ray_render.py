"""Dataset rendering in images/s: the plain command beside Ray with 1 and 2 workers.

    python -m bench.ray_render --count 512 --photo

Each run renders the same seeded dataset into a temporary folder (one torch thread per
process, so a worker is one core); Ray runs on a local cluster started with that many CPUs.
Prints images/s for each and checks the files are identical. On a 2-core machine two workers
leave no core to the driver: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from renderer.dataset import PhotoData, write_dataset
from renderer.world import World


def timed_run(out: Path, args, chunks=None) -> float:
    world = World(image_size=80)
    extra = {} if chunks is None else {"chunks": chunks}
    t = time.perf_counter()
    write_dataset(out, args.count, 3, world, chunk=args.chunk, progress=False,
                  photo=PhotoData() if args.photo else None, **extra)
    return args.count / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--photo", action="store_true")
    args = ap.parse_args(argv)
    import ray

    from renderer.ray_render import ray_chunks

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    rows = [("plain command, 1 thread", timed_run(root / "plain", args))]
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            rows.append((f"Ray, {workers} worker{'s' if workers > 1 else ''}",
                         timed_run(root / f"ray{workers}", args, ray_chunks())))
        finally:
            ray.shutdown()
    same = all((root / f"ray{w}" / "images.npy").read_bytes() == (root / "plain" / "images.npy").read_bytes()
               for w in (1, 2))
    for name, rate in rows:
        print(f"{name:28s} {rate:7.1f} images/s   ({rate / rows[0][1]:.2f}x)")
    print(f"files identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
