"""Interpolate two weight files of one architecture and one world (a "model soup"):

    python -m training.soup A.safetensors B.safetensors --alpha 0.5 --out weights/air.safetensors

Every floating tensor becomes (1 - alpha) * A + alpha * B; the others (counters) are A's. It is
meant for a fine-tune and the weights it started from, which lie in one basin of the loss: the
mean often keeps what each does well (Wortsman et al., "Model soups", ICML 2022). The result's
``meta`` names both sources (their versions) and alpha, and keeps B's training recipe; its
calibration is left out (fit it again: ``python -m training.calibrate``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.api import file_sha256, weights_version
from inference.checkpoint import interpolate, load_weights, save_weights


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--alpha", type=float, default=0.5, help="B's share")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    ma, world_a, meta_a = load_weights(args.a)
    mb, world_b, meta_b = load_weights(args.b)
    if world_a.to_dict() != world_b.to_dict():
        ap.error("the two weight files were trained for different worlds")
    try:
        state = interpolate(ma, mb, args.alpha)
    except ValueError as e:
        ap.error(str(e))
    sources = [{"file": p.name, "version": weights_version(m, file_sha256(p)), "iter": meta.get("iter")}
               for p, m, meta in ((args.a, ma, meta_a), (args.b, mb, meta_b))]
    ma.load_state_dict(state)
    meta = {"train": meta_b.get("train") or meta_a.get("train"),  # B's recipe: the fine-tune, where there is one
            "soup": {"alpha": args.alpha, "a": sources[0], "b": sources[1]}}
    save_weights(ma, world_a, args.out, meta)
    print(f"wrote {args.out}: {1 - args.alpha:g} x {args.a.name} + {args.alpha:g} x {args.b.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
