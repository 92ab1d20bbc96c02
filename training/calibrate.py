"""Fit the calibration of shipped weights on their own validation images, and store it with them.

    python -m training.calibrate --weights weights/air.safetensors --data data/photo-val \\
        --labelled data/crossrender-cal

Runs the network over the validation set (a photo dataset of ``renderer.dataset --photo``: any
camera of the envelope, any look) and over each ``--labelled`` image folder (another renderer's
validation images, e.g. ``bench.crossrender make --seed 13``; steps 1 and 2 weight every set the
same), then fits, in this order (``inference.calibration``):

1. one temperature each for presence, shape and colour, by the likelihood of what was right:
   presence at each step taken (was there another object?), shape and colour of each found
   object matched to a true one;
2. trust: a logistic regression of "the count and every shape and colour are right" on the
   answer's joint log-probability (with those temperatures) and its image fit;
3. the world limits: the fit, unexplained share, spill, fill, table spread, outline agreement,
   step that ``--keep`` (99.7%) of the validation images stay within, and the least table-floor
   contrast that as many show; the validation set and the labelled folders pooled, image by
   image (a real camera's images are neither renderer's, so both bound the world); and, where
   the weights hold one (``training.outliers``), the out-of-set detector's score that
   ``--foreign-keep`` (99.9%) of each set stays within (the largest of the sets' bounds): it
   comes on top of the eight rendering checks, and at 99.7% it flagged the development frames
   under camera effects (high gain, tone curves, glare) twice as often as the checks did.

and writes them into the weights' ``.json`` (``meta.calibration``, with the expected calibration
errors before and after). The ``.safetensors`` file does not change; the model's version does
(``inference.api.weights_version``: its tag for the calibration).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from inference.api import Answer, Predictor
from inference.calibration import Calibration, WorldLimits, joint_log_prob
from inference.checkpoint import config_path
from inference.evaluate import labelled_folder
from inference.fit import Fit
from inference.infer import Inference, Temperatures, infer, to_scene
from inference.metrics import expected_calibration_error, match
from inference.views import dataset_views
from renderer.dataset import SceneDataset
from renderer.scene import SceneBatch

FOREIGN_KEEP = 0.999  # share of each validation set the out-of-set detector's bound keeps


@dataclass
class Outputs:
    """The network's raw outputs on the validation set and what was right, flattened.

    pres_logit, pres_label: each step taken (label: a true object was still to find).
    shape_logits, shape_label, color_logits, color_label: each found object matched to a true one.
    images: per image, (the Inference, the predicted and true scenes, the fit) in batches.
    """

    pres_logit: torch.Tensor
    pres_label: torch.Tensor
    shape_logits: torch.Tensor
    shape_label: torch.Tensor
    color_logits: torch.Tensor
    color_label: torch.Tensor
    images: list


def labelled_steps(out: Inference, pred: SceneBatch, truth: SceneBatch) -> dict[str, list[torch.Tensor]]:
    """One batch's presence steps and matched objects with their labels."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("pl", "py", "sl", "sy", "cl", "cy")}
    true_count = truth.present.sum(1)
    for b in range(pred.batch_size):
        steps = int(out.steps[b])
        parts["pl"].append(out.pres_logit[b, :steps])
        parts["py"].append((torch.arange(steps) < true_count[b]).float())
        pm, tm = pred.present[b], truth.present[b]
        pi, ti = match(pred.position[b][pm][:, :2].numpy(), truth.position[b][tm][:, :2].numpy())
        pi, ti = torch.as_tensor(pi, dtype=torch.long), torch.as_tensor(ti, dtype=torch.long)
        parts["sl"].append(out.shape_logits[b][pm][pi])
        parts["sy"].append(truth.shape[b][tm][ti])
        parts["cl"].append(out.color_logits[b][pm][pi])
        parts["cy"].append(truth.color[b][tm][ti])
    return parts


def answer_right(pred: SceneBatch, truth: SceneBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) bool twice, from one matching: the count and every matched object's shape are right;
    and its colour too."""
    shapes, colours = [], []
    for b in range(pred.batch_size):
        pm, tm = pred.present[b], truth.present[b]
        if int(pm.sum()) != int(tm.sum()):
            shapes.append(False)
            colours.append(False)
            continue
        pi, ti = match(pred.position[b][pm][:, :2].numpy(), truth.position[b][tm][:, :2].numpy())
        pairs = list(zip(pi, ti))
        shapes.append(all(int(pred.shape[b][pm][p]) == int(truth.shape[b][tm][t]) for p, t in pairs))
        colours.append(shapes[-1] and all(int(pred.color[b][pm][p]) == int(truth.color[b][tm][t]) for p, t in pairs))
    return torch.tensor(shapes), torch.tensor(colours)


def collect(batches: list[tuple[Inference, SceneBatch, SceneBatch, Fit]]) -> Outputs:
    """Batches of (network outputs, predicted scenes, true scenes, fit) -> ``Outputs``."""
    parts: dict[str, list[torch.Tensor]] = {}
    for out, pred, truth, _ in batches:
        for k, v in labelled_steps(out, pred, truth).items():
            parts.setdefault(k, []).extend(v)
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return Outputs(cat["pl"], cat["py"], cat["sl"], cat["sy"], cat["cl"], cat["cy"], list(batches))


def run_validation(predictor: Predictor, data: SceneDataset, scenes: int, batch: int = 100) -> Outputs:
    """The network (no temperature) and the fit over the first ``scenes`` validation images."""
    world, batches = predictor.world, []
    for lo in range(0, min(scenes, len(data)), batch):
        idx = np.arange(lo, min(lo + batch, scenes, len(data)))
        view = dataset_views(data, idx, world)
        out = infer(predictor.model, view.pixels, world, view, mirror=predictor.calibration.mirror)
        pred = to_scene(out.objects, world)
        batches.append((out, pred, data.scenes(idx), predictor.fit(pred, view.pixels, view, out)))
    return collect(batches)


def product_answers(predictor: Predictor, items: list, batch: int = 50) -> list[Answer]:
    """The product path (``Predictor.prepare/forward``) over ``items`` (image, camera or None),
    ``batch`` images a pass."""
    out = []
    for lo in range(0, len(items), batch):
        prepared = [predictor.prepare(im, cam) for im, cam in items[lo:lo + batch]]
        out.append(predictor.forward(prepared, [0] * len(prepared)))
    return out


def answer_batches(answers: list[Answer], truth: SceneBatch) -> list[tuple[Inference, SceneBatch, SceneBatch, Fit]]:
    """``product_answers``' batches with their true scenes (``truth``, in the same order), as
    ``collect`` reads them."""
    batches, lo = [], 0
    for a in answers:
        hi = lo + a.scene.batch_size
        batches.append((a.raw, a.scene, truth.select(slice(lo, hi)), a.fit))
        lo = hi
    return batches


def run_labelled(predictor: Predictor, items: list, truth: SceneBatch) -> Outputs:
    """The product path over labelled images with their cameras
    (``inference.evaluate.labelled_folder``); raw logits, as ``run_validation``."""
    return collect(answer_batches(product_answers(predictor, items), truth))


def fit_temperature(nll) -> float:
    """The temperature in [0.05, 20] minimising ``nll(T)``: a golden-section search on log T."""
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(np.exp(a)) < nll(np.exp(b)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def temperatures(sets: list[Outputs]) -> Temperatures:
    """Step 1: the three temperatures, each minimising the mean over ``sets`` of the set's mean
    negative log-likelihood (every set counts the same, however many images it has)."""
    def mean_nll(loss, logits: str, labels: str):
        return lambda t: float(np.mean([float(loss(getattr(o, logits) / t, getattr(o, labels))) for o in sets]))
    return Temperatures(fit_temperature(mean_nll(F.binary_cross_entropy_with_logits, "pres_logit", "pres_label")),
                        fit_temperature(mean_nll(F.cross_entropy, "shape_logits", "shape_label")),
                        fit_temperature(mean_nll(F.cross_entropy, "color_logits", "color_label")))


def calibration_errors(o: Outputs, t: Temperatures) -> dict[str, float]:
    """Expected calibration error (15 bins) of presence decisions, shapes and colours under ``t``."""
    p = torch.sigmoid(o.pres_logit / t.presence)
    sp, sc = torch.softmax(o.shape_logits / t.shape, -1).max(-1)
    cp, cc = torch.softmax(o.color_logits / t.color, -1).max(-1)
    return {
        "presence": expected_calibration_error(torch.maximum(p, 1 - p), (p > 0.5).float() == o.pres_label),
        "shape": expected_calibration_error(sp, sc == o.shape_label),
        "color": expected_calibration_error(cp, cc == o.color_label),
    }


def answer_features(o: Outputs, t: Temperatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """Per image: joint log-probability under ``t``, image fit, whether the answer is right, and
    the fits (one per batch)."""
    logp, fit, right, fits = [], [], [], []
    for out, pred, truth, f in o.images:
        used = torch.arange(out.pres_logit.shape[1]) < out.steps[:, None]
        conf = torch.sigmoid(out.pres_logit / t.presence) * used
        sp = torch.softmax(out.shape_logits / t.shape, -1).amax(-1) * pred.present
        cp = torch.softmax(out.color_logits / t.color, -1).amax(-1) * pred.present
        logp.append(joint_log_prob(conf, sp, cp, pred.present))
        fit.append(f.image)
        right.append(answer_right(pred, truth)[1])
        fits.append(f)
    return torch.cat(logp), torch.cat(fit), torch.cat(right), fits


def fit_trust(logp: torch.Tensor, fit: torch.Tensor, right: torch.Tensor,
              weight: torch.Tensor | None = None) -> tuple[float, float, float]:
    """Step 2: logistic regression of ``right`` on (logp, fit), by LBFGS on the (``weight``ed)
    mean log-loss."""
    x = torch.stack([logp.clamp_min(-30.0), fit], -1).double()
    weight = torch.ones_like(fit, dtype=torch.float64) if weight is None else weight.double()
    w = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(x @ w[:2] + w[2], right.double(), weight=weight)
                + 1e-4 * (w[:2] ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return tuple(round(float(v), 5) for v in w.detach())


def world_limits(fits: list, keep: float, sets: list[list] | None = None,
                 foreign_keep: float = FOREIGN_KEEP) -> WorldLimits:
    """Step 3: bounds that ``keep`` of the validation images (``fits``, pooled) stay within,
    each check alone. The out-of-set detector's bound is the largest of what ``foreign_keep`` of
    each of ``sets`` (the fits set by set; default: all one set) stay within: it reads the network's
    features, whose strangeness runs higher on another renderer's in-world images (Blender's
    rounded, glossy shapes), so a pooled bound would flag that renderer's images far more often
    than ``1 - keep``."""
    cat = lambda name, fs=fits: torch.cat([getattr(f, name) for f in fs])  # noqa: E731
    edge = cat("edge_contrast")
    edge = edge[~torch.isnan(edge)]
    q = lambda x, p: round(float(torch.quantile(x.float(), p)), 5)  # noqa: E731
    detector = all(getattr(f, "foreign", None) is not None for f in fits)
    max_foreign = max(q(cat("foreign", s), foreign_keep) for s in (sets or [fits])) if detector else 1.0
    return WorldLimits(min_fit=q(cat("image"), 1 - keep), max_unexplained=q(cat("unexplained"), keep),
                       max_spill=q(cat("spill"), keep), max_spread=q(cat("table_spread"), keep),
                       min_outline=q(cat("outline"), 1 - keep),
                       min_edge=q(edge, 1 - keep) if len(edge) else 0.0, min_fill=q(cat("fill"), 1 - keep),
                       min_step=q(cat("step"), 1 - keep), max_foreign=max_foreign)


def calibrate(predictor: Predictor, data: SceneDataset, scenes: int, keep: float,
              others: dict[str, Outputs] | None = None, foreign_keep: float = FOREIGN_KEEP) -> tuple[Calibration, dict]:
    """All three steps -> the calibration and a report (ECEs before and after, trust's log-loss).

    others: more labelled sets by name (``run_labelled``, e.g. another renderer's images) that the
    temperatures and trust are fitted on too, each set weighted the same as ``data``; the world
    limits are fitted on all sets' images pooled."""
    sets = {"validation": run_validation(predictor, data, scenes), **(others or {})}
    temps = temperatures(list(sets.values()))
    feats = {name: answer_features(o, temps) for name, o in sets.items()}
    logp, fit, right = (torch.cat([f[i] for f in feats.values()]) for i in range(3))
    weight = torch.cat([torch.full((len(f[2]),), len(right) / (len(sets) * len(f[2]))) for f in feats.values()])
    pooled = [f for v in feats.values() for f in v[3]]  # every set's fits, for the world limits
    limits = world_limits(pooled, keep, [v[3] for v in feats.values()], foreign_keep)
    cal = Calibration(temps, fit_trust(logp, fit, right, weight), limits, True,
                      predictor.calibration.mirror, predictor.calibration.foreign)
    report = {}
    for name, o in sets.items():
        lp, ft, rt, fits = feats[name]
        report[name] = {"scenes": len(rt), "ece_before": calibration_errors(o, Temperatures()),
                        "ece_after": calibration_errors(o, temps), "answers_right": round(float(rt.float().mean()), 4),
                        "trust_ece": expected_calibration_error(cal.trust_of(lp, ft), rt),
                        "flagged": round(float((~torch.cat([cal.limits.check(f) for f in fits])).float().mean()), 4)}
    return cal, {**report.pop("validation"), **({"others": report} if report else {})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="weights/air.safetensors")
    ap.add_argument("--data", default="data/photo-val", help="a photo validation dataset (not the test sets)")
    ap.add_argument("--scenes", type=int, default=2000)
    ap.add_argument("--keep", type=float, default=0.997, help="share of validation images each world check keeps "
                                                             "(six checks: about 1.5%% flagged in all)")
    ap.add_argument("--foreign-keep", type=float, default=FOREIGN_KEEP,
                    help="share of each validation set the out-of-set detector's bound keeps (default %(default)s)")
    ap.add_argument("--labelled", action="append", default=[], metavar="DIR",
                    help="also fit temperatures and trust on this labelled image folder (bench.crossrender's "
                         "layout, e.g. a Blender validation set; never a test set); repeat for several")
    ap.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                    help="answer from each view and its mirror, averaged (inference.infer.mirror_average), and fit "
                         "the calibration to those answers; default on for a view network, off otherwise")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = SceneDataset.open(args.data)
    if not data.has_cameras:
        print(f"{args.data} is not a photo dataset (renderer.dataset --photo)", file=sys.stderr)
        return 2
    predictor = Predictor.load(args.weights)
    mirror = predictor.takes_cameras if args.mirror is None else args.mirror
    if mirror and not predictor.takes_cameras:
        print("--mirror needs a view network (weights that read cameras)", file=sys.stderr)
        return 2
    # raw outputs, limits unchecked; the out-of-set detector (training.outliers) is kept
    predictor.calibration = Calibration(mirror=mirror, foreign=predictor.calibration.foreign)
    others = {d: run_labelled(predictor, *labelled_folder(predictor.world, Path(d))) for d in args.labelled}
    cal, report = calibrate(predictor, data, args.scenes, args.keep, others, args.foreign_keep)
    path = config_path(args.weights)
    doc = json.loads(path.read_text())
    detector = doc["meta"].get("calibration", {}).get("fitted_on", {}).get("foreign")  # training.outliers' record
    doc["meta"]["calibration"] = {**cal.to_meta(), "fitted_on": {"data": args.data, "labelled": args.labelled,
                                                                 "keep": args.keep,
                                                                 "foreign_keep": args.foreign_keep, **report}}
    if detector is not None and cal.foreign is not None:
        doc["meta"]["calibration"]["fitted_on"]["foreign"] = detector
    path.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc["meta"]["calibration"], indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
