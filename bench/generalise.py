"""Do the networks generalise to object counts they never saw? The paper's two tests, on our world.

    python -m bench.generalise --print-commands > generalise.sh   # the 6 trainings
    sh generalise.sh                                              # hours on a 2-core CPU
    python -m bench.generalise --scenes 200 --seed 7              # the report

- Extrapolation: trained on scenes with 0, 1 or 2 objects, tested on scenes with exactly 3.
- Interpolation: trained on scenes with 0, 1 or 3 objects, tested on scenes with exactly 2.

For AIR, DAIR and the supervised counterpart each. The world is unchanged (N = 3 slots, so a
network can answer 3 even if it never saw 3); only the training scenes' counts differ: each
variant trains on the scenes of the shipped model's dataset (data/train, data/val) whose count is
allowed (``python -m training.train --counts=0,1,2``; the prior draws the count uniformly and
independently of the objects, so keeping the scenes with an allowed count is exactly sampling
the prior restricted to those counts). The variants train with a smaller budget than the
shipped model (``--iters``); the report reads each one's budget from its weights. Missing
weights make a "not trained" row with the command.

Writes ``--out`` (default bench/results/generalise.md) and prints it. Held-out scenes come from
``inference.evaluate.held_out_set`` (seeded far from every dataset chunk seed).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.methods import (
    Method,
    Result,
    budget_note,
    check_world,
    git_commit,
    load_model,
    machine,
    metric_cells,
    run_method,
    stamp,
    supervised_predict,
    train_command,
)
from inference.evaluate import air_predict, held_out_set
from renderer.world import World

EXTRAPOLATION_TARGET = 0.90  # DAIR's count accuracy on 3 objects after training on 0..2


@dataclass(frozen=True)
class Experiment:
    """name; the object counts of the training scenes; the exact count of the test scenes;
    tag in file names (weights/generalise/air-012.safetensors)."""

    name: str
    train_counts: str
    test_objects: int
    tag: str


EXPERIMENTS = (
    Experiment("extrapolation", "0,1,2", 3, "012"),
    Experiment("interpolation", "0,1,3", 2, "013"),
)
METHODS = (("AIR", "air", "amortised", False), ("DAIR", "dair", "amortised", True),
           ("Supervised", "supervised", "supervised", False))  # row, file stem, objective, dair


def trained_counts(meta: dict) -> str:
    """The object counts a variant trained on ("0,1,2"; "0..N" for all), from its weights' metadata."""
    counts = (meta.get("train") or {}).get("counts", "")
    return counts or "0..N"


def weights_path(weights_dir: Path, stem: str, exp: Experiment) -> Path:
    return weights_dir / f"{stem}-{exp.tag}.safetensors"


def train_commands(exp: Experiment, weights_dir: Path, iters: int) -> dict[str, str]:
    budget = {"counts": exp.train_counts, "max_iters": iters, "threads": 1}
    return {row: train_command(objective, f"runs/generalise/{stem}-{exp.tag}",
                               str(weights_path(weights_dir, stem, exp)), dair=dair, budget=budget)
            for row, stem, objective, dair in METHODS}


def all_commands(weights_dir: Path, iters: int) -> list[str]:
    lines = ["# bench.generalise: one training per method and experiment, on the scenes of data/train and data/val",
             "# with the allowed counts (python -m renderer.dataset --count 100000 --seed 0 --out data/train; "
             "--count 2000 --seed 1 --out data/val)"]
    for exp in EXPERIMENTS:
        lines += list(train_commands(exp, weights_dir, iters).values())
    return lines


def format_report(rows: list[tuple[Experiment, Result, dict]], args: argparse.Namespace, setup: dict) -> str:
    lines = [
        "# Generalisation to unseen object counts",
        "",
        f"`python -m bench.generalise {' '.join(setup['argv'])}` on {setup['date']}, commit {setup['commit']}; "
        f"{setup['machine']}.",
        "",
        f"Each test set: {args.scenes} prior scenes with exactly the test count, seed {args.seed} (generator "
        f"seed 2^40 + {args.seed}), rendered as the training data. Count accuracy ± the 95% interval's "
        "half-width; other columns as in `compare.md`.",
        "",
        "| experiment | method | trained on | tested on | count % | shape % | colour % | pos median cm | "
        "pos p90 cm | yaw median deg | mean objects answered | training budget |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    missing = []
    for exp, r, info in rows:
        head = f"| {exp.name} | {r.method.name} | {exp.train_counts} objects | {exp.test_objects} |"
        if not r.trained:
            lines.append(head + " not trained | | | | | | | |")
            missing.append((exp, r))
            continue
        answered = r.pred.count.float().mean().item()
        lines.append(head + " " + " | ".join(metric_cells(r.summary)) + f" | {answered:.2f} | {info['budget']} |")
    if missing:
        lines += ["", "Not trained (weights missing). Train with:", ""]
        lines += [f"- {r.method.name}, {exp.name}: `{r.method.command}`" for exp, r in missing]
    lines += ["", "## Target", ""]
    dair = next((r for exp, r, _ in rows if exp.name == "extrapolation" and r.method.name == "DAIR"), None)
    if dair is None or not dair.trained:
        lines.append(f"- **DAIR extrapolation count accuracy >= {EXTRAPOLATION_TARGET:.0%}: not measured** "
                     "(DAIR extrapolation weights missing).")
    else:
        acc = dair.summary["count_accuracy"]
        verdict = "met" if acc >= EXTRAPOLATION_TARGET else "missed"
        too_few = (dair.pred.count < 3).float().mean().item()
        lines.append(f"- **DAIR extrapolation count accuracy >= {EXTRAPOLATION_TARGET:.0%}: {verdict}** "
                     f"({acc * 100:.1f}% on {dair.summary['scenes']} scenes with 3 objects; "
                     f"{too_few * 100:.1f}% answered fewer than 3).")
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Extrapolation (0..2 -> 3) and interpolation (0,1,3 -> 2) "
                                            "for AIR, DAIR and the supervised counterpart.")
    p.add_argument("--scenes", type=int, default=200, help="held-out scenes per test")
    p.add_argument("--seed", type=int, default=7, help="seed of the held-out scenes")
    p.add_argument("--weights-dir", type=Path, default=Path("weights/generalise"),
                   help="where the variants' weights are (STEM-TAG.safetensors, e.g. dair-012)")
    p.add_argument("--iters", type=int, default=3000, help="training iterations in the printed commands")
    p.add_argument("--batch", type=int, default=64, help="images per call")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("bench/results/generalise.md"), help="markdown report")
    p.add_argument("--print-commands", action="store_true", help="print the dataset and training commands and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_commands:
        print("\n".join(all_commands(args.weights_dir, args.iters)))
        return 0
    torch.set_num_threads(args.threads)
    rows = []
    held: dict[int, tuple] = {}
    world: World | None = None
    for exp in EXPERIMENTS:
        commands = train_commands(exp, args.weights_dir, args.iters)
        for row, stem, _, _ in METHODS:
            path = weights_path(args.weights_dir, stem, exp)
            loaded = load_model(path, "supervised" if stem == "supervised" else "air")
            if loaded is None:
                rows.append((exp, Result(Method(row, None, command=commands[row])), {}))
                continue
            model, w, meta = loaded
            if world is None:
                world = w
            try:
                check_world(str(path), w, world)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            if exp.test_objects not in held:
                held[exp.test_objects] = held_out_set(world, args.scenes, args.seed, objects=exp.test_objects)
            images, truth = held[exp.test_objects]
            predict = supervised_predict(model, world) if stem == "supervised" else air_predict(model, world)
            method = Method(row, predict, command=commands[row], batch=args.batch, timing_images=1)
            print(f"{exp.name} {row} ...", file=sys.stderr, flush=True)
            note = budget_note(meta) or "not recorded"
            drew = trained_counts(meta)
            if drew != exp.train_counts:
                note += f" (**warning: trained on counts {drew}, not {exp.train_counts}**)"
            rows.append((exp, run_method(method, images, truth, world), {"budget": note}))
    setup = {"argv": sys.argv[1:] if argv is None else argv, "date": stamp(), "commit": git_commit(),
             "machine": machine()}
    report = format_report(rows, args, setup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
