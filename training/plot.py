"""Learning curves from training logs.

    python -m training.plot --log runs/air/log.csv --out docs/training.png
    python -m training.plot --log runs/air/log.csv runs/elbo/log.csv --label amortised elbo --out docs/curves.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """log.csv -> {"loss": [(iter, value)], "count_accuracy": [(iter, value)]}."""
    out: dict[str, list[tuple[int, float]]] = {"loss": [], "count_accuracy": []}
    with path.open() as f:
        for row in csv.DictReader(f):
            it = int(row["iter"])
            if row.get("loss"):
                out["loss"].append((it, float(row["loss"])))
            if row.get("count_accuracy"):
                out["count_accuracy"].append((it, float(row["count_accuracy"])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Plot loss and count accuracy against training steps.")
    p.add_argument("--log", type=Path, nargs="+", required=True, help="log.csv files")
    p.add_argument("--label", nargs="*", default=None, help="one label per log")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    labels = args.label or [str(x.parent.name) for x in args.log]
    if len(labels) != len(args.log):
        raise SystemExit("give one --label per --log")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for path, label in zip(args.log, labels):
        data = read_log(path)
        if data["loss"]:
            ax_loss.plot(*zip(*data["loss"]), label=label)
        if data["count_accuracy"]:
            ax_acc.plot(*zip(*data["count_accuracy"]), marker="o", label=label)
    ax_loss.set(xlabel="iteration", ylabel="loss (per-run units)", title="training loss")
    ax_acc.set(xlabel="iteration", ylabel="count accuracy", title="held-out count accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
