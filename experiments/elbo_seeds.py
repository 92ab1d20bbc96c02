"""Issue 13 part 2: the ELBO alone, from scratch, over several seeds of one recipe.

    for s in 0 1 2 3 4; do  # 3000 iterations x 16: 20-35 min each at one thread here
        python -m training.train training/recipes/elbo_enumerated.py --seed=$s --out_dir=runs/elbo-enum-s$s \
            --export=weights/reduced/elbo-enum-s$s.safetensors
    done
    python -m experiments.elbo_seeds --runs runs/elbo-enum-s0 runs/elbo-enum-s1 ... --plot docs/elbo_seeds.png

Each run is scored at its *last* iterate (``ckpt.pt``; in a run that averages its weights, the
running mean that ends there), never at the checkpoint its labelled
validation curve liked best: no label chooses anything. Held-out: 500 scenes of the run's world
(seed 12345, as the model card's ELBO table). Prints one row per seed against the issue's
targets (count >= 95%, shape >= 90%, colour >= 95%, position median <= 1.5 cm) and how many
seeds meet all four; ``--plot`` draws every seed's validation curves in one figure.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from experiments.anchored import AnchoredAIR, AnchoredAIRConfig
from inference.averaging import model_weights
from inference.evaluate import air_predict, evaluate, held_out_set
from renderer.world import World

TARGETS = {"count_accuracy": 0.95, "shape_accuracy": 0.90, "color_accuracy": 0.95}
POSITION_TARGET_CM = 1.5
CURVES = ("count_accuracy", "shape_accuracy", "color_accuracy", "position_median_cm")


def load_last(run: Path) -> tuple[AnchoredAIR, World, int]:
    """The run's last iterate, or the running weight mean that ends there in a run that keeps one:
    (model in eval mode, its world, its iteration)."""
    state = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=False)
    model = AnchoredAIR(AnchoredAIRConfig.from_dict(state["model_args"]))
    model.load_state_dict(model_weights(state))
    return model.eval(), World.from_dict(state["world"]), int(state["iter_num"])


def meets_targets(metrics: dict) -> bool:
    return all(metrics[k] >= v for k, v in TARGETS.items()) and metrics["position_median_cm"] <= POSITION_TARGET_CM


def score_run(run: Path, scenes: int, seed: int) -> dict:
    model, world, it = load_last(run)
    images, truth = held_out_set(world, scenes, seed)
    summary, _ = evaluate(air_predict(model, world), images, truth, world)
    return {"run": str(run), "iter": it, **{k: summary[k] for k in TARGETS},
            "position_median_cm": summary["position_error_cm"]["median"]}


def curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {k: [] for k in CURVES}
    with (run / "log.csv").open() as f:
        for row in csv.DictReader(f):
            for k in CURVES:
                if row.get(k) and row[k] != "nan":
                    out[k].append((int(row["iter"]), float(row[k])))
    return out


def plot(runs: list[Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.6))
    for run in runs:
        data = curves(run)
        for ax, k in zip(axes, CURVES):
            if data[k]:
                ax.plot(*zip(*data[k]), label=run.name)
    for ax, k in zip(axes, CURVES):
        target = TARGETS.get(k, POSITION_TARGET_CM)
        ax.axhline(target, color="k", ls="--", lw=0.8)
        ax.set(xlabel="iteration", title=k.replace("_", " "), ylim=(0, 1.02) if k in TARGETS else (0, 10))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.elbo_seeds", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="training run folders (log.csv, ckpt.pt)")
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--plot", type=Path, default=None, help="PNG of every run's validation curves")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'run':28s} {'iter':>5s} {'count':>6s} {'shape':>6s} {'colour':>6s} {'pos cm':>6s}  targets")
    met = 0
    for run in args.runs:
        r = score_run(run, args.scenes, args.seed)
        ok = meets_targets(r)
        met += ok
        print(f"{run.name:28s} {r['iter']:5d} {r['count_accuracy']:6.1%} {r['shape_accuracy']:6.1%} "
              f"{r['color_accuracy']:6.1%} {r['position_median_cm']:6.2f}  {'met' if ok else 'missed'}")
    print(f"{met} of {len(args.runs)} runs meet every target (the issue asks for 4 of 5)")
    if args.plot:
        plot(args.runs, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
