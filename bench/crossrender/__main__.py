"""The cross-renderer development set (issue 11 §3): Blender Cycles images, scored.

    make blender-env                                                     # once: .venv-blender with bpy 4.5
    python -m bench.crossrender check --scenes 8 --seed 3                # Blender vs our silhouettes
    python -m bench.crossrender make --scenes 500 --seed 11 --out data/crossrender
    python -m bench.crossrender score --weights weights/air.safetensors --data data/crossrender \\
        --out bench/results/crossrender.md

``make`` samples the specs (``bench.crossrender.specs``), writes specs.json and labels.json,
then renders the missing PNGs with Cycles in chunks (resumable: rerun the same command).
``score`` runs a predictor (the weights in-process; a view network is given each image's
camera, a fixed-camera one none) on every rendered image and reports issue 11's metrics overall and by camera elevation and
distance (markdown table + plot). Never train or select checkpoints on this set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.crossrender.specs import LOOKS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.crossrender", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("make", help="sample the specs and render them with Cycles")
    m.add_argument("--scenes", type=int, default=500, help="number of scenes")
    m.add_argument("--seed", type=int, default=11, help="seed of the set")
    m.add_argument("--out", type=Path, default=Path("data/crossrender"), help="output folder")
    m.add_argument("--threads", type=int, default=1, help="Cycles CPU threads")
    m.add_argument("--chunk", type=int, default=25, help="scenes per Blender process")
    m.add_argument("--look", choices=sorted(LOOKS), default="dev",
                   help="the set's look (bench.crossrender.specs.LOOKS): dev, or issue 13's shifted look")
    m.add_argument("--samples", type=int, default=None,
                   help="Cycles samples per pixel instead of the look's (scenes and looks unchanged)")
    m.add_argument("--specs-only", action="store_true", help="write specs.json and labels.json, render nothing")
    m.add_argument("--todays-camera", action="store_true",
                   help="control set: every scene from the world's fixed camera (square), not the envelope")

    c = sub.add_parser("check", help="compare Blender's silhouettes with our renderer's, same cameras")
    c.add_argument("--scenes", type=int, default=8, help="scenes with 2+ objects to compare")
    c.add_argument("--seed", type=int, default=3, help="seed of the specs")
    c.add_argument("--out", type=Path, default=None, help="keep the mask PNGs here (default: a temp folder)")
    c.add_argument("--threads", type=int, default=1, help="Cycles CPU threads")
    c.add_argument("--report", type=Path, default=None, help="also write the table as markdown here")

    s = sub.add_parser("score", help="score weights on a rendered set")
    s.add_argument("--weights", type=Path, default=Path("weights/air.safetensors"), help="weights file")
    s.add_argument("--data", type=Path, default=Path("data/crossrender"), help="the set's folder")
    s.add_argument("--out", type=Path, default=None, help="write the markdown here (and the plot beside it)")
    s.add_argument("--batch", type=int, default=64, help="images per predictor call")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    args = p.parse_args(argv)
    if args.command == "make":
        from bench.crossrender.make import make

        make(args.out, args.scenes, args.seed, args.threads, args.chunk, render=not args.specs_only,
             todays_camera=args.todays_camera, look=args.look, samples=args.samples)
        return 0
    if args.command == "check":
        from bench.crossrender.check import check_report, failures, format_rows, run_check
        from renderer.world import World

        rows = run_check(World(), args.scenes, args.seed, args.out, args.threads)
        bad = failures(rows)
        verdict = "\n".join(bad) if bad else f"All {len(rows)} silhouettes agree."
        print(format_rows(rows) + "\n\n" + verdict)
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(check_report(rows, verdict, args))
        return 1 if bad else 0
    import torch

    from bench.crossrender.score import InProcessPredictor, score_set, write_report

    torch.set_num_threads(args.threads)
    predictor = InProcessPredictor(args.weights)
    result = score_set(predictor, args.data, args.batch)
    text = write_report(result, args.weights, args.data, args.out, predictor.name)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
