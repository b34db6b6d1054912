"""The report of ``wardrobe cv``: every evaluation figure per held-out fold of people, their mean
and spread, the hedged tables with calibration fitted without the fold's people, and plots.

For held-out fold k everything fitted is fitted on the *other* folds' out-of-fold predictions,
exactly as the shipped model's calibration is fitted on all of them (cross-fitting):

* the temperature (NLL on the other folds' OOF logits),
* the hedger's λ tables, three times: per photo (photos exchangeable), per sender (people
  exchangeable, the promise for a new person on average) and per group (every group of ~50 new
  people within 1 point of the target in 98 % of groups): ``calibrate_for_unit``.

So each fold's hedged accuracy is what a new group of people would get from a calibration that
never saw them. The back-off baseline's information gain is read off the same photos at equal
realised accuracy (``compare_darts_backoff``).

Every figure is also given per audience (``evaluation.audience``: small and big senders, children's
and adults' clothes, each photo-weighted and person-weighted; the hedged promise on each fold's
small senders), with [J2]'s bars for them (``evaluation.audience_report``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from services.trainer.model.calibrate import expected_calibration_error, fit_temperature, softmax
from services.trainer.evaluation import audience_report, plots
from services.trainer.evaluation.audience import SMALL_SENDER_MAX_PHOTOS, Audiences, accuracy_figures, hedged_figures
from services.trainer.evaluation.comparison import compare_darts_backoff
from services.trainer.evaluation.evaluate import classification_metrics
from services.trainer.evaluation.report import REPORT_TARGETS, hedged_summary
from shared.hedging.calibration import CRC_UNITS, GROUP_CONFIDENCE, Calibration, calibrate_for_unit, lambda_for
from shared.hedging.darts import darts_path, is_correct, node_probabilities, path_choice, tree_arrays
from shared.taxonomy import Taxonomy

__all__ = ["cv_report", "fold_summary", "aggregate", "hedged_correct", "MUST_REACH", "SHORTFALL_TOLERANCE"]

log = logging.getLogger(__name__)

SHORTFALL_TOLERANCE = 0.01  # hedged realised accuracy must stay ≥ target − 1 point on every fold
UNITS = CRC_UNITS  # photo, sender, group
# the issue's bars for the 5-fold sender-grouped CV (means over folds)
MUST_REACH = {"top1": 0.80, "top1_top10": 0.85, "top1_10way": 0.87}
MAX_OOF_ECE = 0.03
MAX_ROTATION_DROP = 0.03


def hedged_correct(probs: np.ndarray, y: np.ndarray, taxonomy: Taxonomy, cal: Calibration, target: float,
                   method: str = "crc") -> np.ndarray:
    """Per photo: is the hedged answer at ``target`` right (the true leaf or an ancestor)?"""
    arrays = tree_arrays(taxonomy)
    p = np.asarray(probs, np.float64)
    path = darts_path(node_probabilities(p / p.sum(1, keepdims=True), arrays.leaf_matrix),
                      np.asarray(cal.rewards), arrays.lca, cal.lam_max)
    nodes = path_choice(path, lambda_for(cal, target, method), nested=(method == "crc"))
    return is_correct(nodes, y, arrays.leaf_mask)


def _per_sender_mean(values: np.ndarray, senders: np.ndarray) -> float:
    """Mean over people of each person's mean (what the sender-level promise is about)."""
    _, inv = np.unique(senders, return_inverse=True)
    return float(np.mean(np.bincount(inv, weights=values.astype(float)) / np.bincount(inv)))


def fold_summary(logits: dict[int, np.ndarray], y: np.ndarray, senders: np.ndarray, held: np.ndarray,
                 classes: list[str], taxonomy: Taxonomy,
                 group_confidence: float = GROUP_CONFIDENCE, audiences: Audiences | None = None) -> tuple[dict, dict]:
    """Every figure for the photos ``held`` (one fold of people), with temperature and λ tables
    fitted on the other photos' OOF predictions only (the group promise at ``group_confidence``),
    also per audience (``audiences`` of all photos; default: senders' photo counts, no kids flag).
    Returns (summary, arrays for plots)."""
    rest = ~held
    temperature = fit_temperature(logits[0][rest], y[rest])
    rest_probs = softmax(logits[0][rest], temperature)
    cals = {unit: calibrate_for_unit(rest_probs, y[rest], senders[rest], taxonomy, unit,
                                     **({"confidence": group_confidence} if unit == "group" else {}))
            for unit in UNITS}
    probs = softmax(logits[0][held], temperature)
    yk, sk = y[held], senders[held]
    aud = (audiences or Audiences.of(senders)).subset(held)
    metrics, matrix, bins = classification_metrics(probs, yk, classes, taxonomy)
    # a class nobody in this fold photographed has no recall here (not a recall of 0)
    metrics["per_class"] = {c: v for c, v in metrics["per_class"].items() if v["support"]}
    summary: dict[str, Any] = {"n": int(held.sum()), "senders": int(len(np.unique(sk))), **metrics,
                               "temperature": temperature, "rotation": {}, "rotation_true_prob": {}}
    rotated = {}
    for angle in sorted(logits):
        p = rotated[angle] = softmax(logits[angle][held], temperature)
        summary["rotation"][str(angle)] = float((p.argmax(1) == yk).mean())
        summary["rotation_true_prob"][str(angle)] = float(p[np.arange(len(yk)), yk].mean())
    summary["hedged"] = {}
    summary["audience"] = accuracy_figures(probs, yk, aud, classes, taxonomy, rotated)
    summary["audience_hedged"] = {}
    for unit, cal in cals.items():
        table = hedged_summary(probs, yk, taxonomy, cal)
        rights = {}
        for key in REPORT_TARGETS:
            right = rights[key] = hedged_correct(probs, yk, taxonomy, cal, float(key))
            table["crc"][key]["accuracy_per_sender"] = _per_sender_mean(right, sk)
            table["crc"][key]["shortfall_ok"] = bool(table["crc"][key]["accuracy"] >= float(key) - SHORTFALL_TOLERANCE)
        summary["hedged"][unit] = {"crc": table["crc"], "darts": table["darts"], "n_calibration": int(rest.sum()),
                                   "n_calibration_senders": int(len(np.unique(senders[rest])))}
        summary["audience_hedged"][unit] = hedged_figures(rights, aud)
    cmp = compare_darts_backoff(probs, yk, taxonomy, cals["photo"])
    summary["hedged"]["backoff"] = {k: {"darts": v["darts"], "backoff": v["backoff"]} for k, v in cmp["at_targets"].items()}
    return summary, {"probs": probs, "matrix": matrix, "bins": bins, "rotated": rotated}


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None:
            out[key] = float(v)
    return out


def aggregate(folds: list[dict]) -> dict[str, dict[str, float]]:
    """Mean, sample sd, min and max over folds of every number in the fold summaries (dotted keys)."""
    flat = [_flatten(f) for f in folds]
    keys = sorted(set().union(*flat))
    out = {}
    for key in keys:
        v = np.array([f[key] for f in flat if key in f])
        out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max()), "folds": len(v)}
    return out


def _must_reach(agg: dict, folds: list[dict], oof_ece: float) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for key, bar in MUST_REACH.items():
        checks[f"{key}_mean>={bar}"] = {"value": agg[key]["mean"], "met": agg[key]["mean"] >= bar}
    checks[f"oof_ece<={MAX_OOF_ECE}"] = {"value": oof_ece, "met": oof_ece <= MAX_OOF_ECE}
    for unit in UNITS:
        worst = {key: min(f["hedged"][unit]["crc"][key]["accuracy"] - float(key) for f in folds) for key in REPORT_TARGETS}
        checks[f"hedged_{unit}_every_fold>=target-0.01"] = {
            "worst_margin": worst, "met": all(m >= -SHORTFALL_TOLERANCE for m in worst.values())}
    drop = max(agg["rotation.0"]["mean"] - agg[f"rotation.{a}"]["mean"] for a in ("-30", "30"))
    checks[f"rotation_30_within_{MAX_ROTATION_DROP}"] = {"value": drop, "met": drop <= MAX_ROTATION_DROP}
    return checks


def cv_report(oof: dict, taxonomy: Taxonomy, out_dir: Path, command: str = "",
              group_confidence: float = GROUP_CONFIDENCE, small_max: int = SMALL_SENDER_MAX_PHOTOS,
              recomputed_by: str = "") -> dict:
    """Write ``cv.json``, ``cv.md`` and PNG plots into ``out_dir``; return the JSON.
    ``group_confidence``: the share of groups the group promise is calibrated for
    (``bench/group_promise.py`` compares settings). ``small_max``: the most photos of a small sender
    (the audiences; children's clothes when ``oof`` has ``kids``). ``recomputed_by``: the command that
    rewrote the report from a stored ``oof.npz`` (``command`` stays the one that made the predictions)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = [str(c) for c in oof["classes"]]
    y, senders, fold_of = oof["labels"], oof["senders"].astype(str), oof["folds"]
    logits = {int(k.split("_", 1)[1]): v for k, v in oof.items() if k.startswith("logits_")}
    audiences = Audiences.of(senders, oof.get("kids"), small_max)
    folds, oof_probs = [], np.zeros_like(logits[0])
    oof_rotated = {a: np.zeros_like(v, dtype=np.float64) for a, v in logits.items()}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for k in range(int(fold_of.max()) + 1):
        held = fold_of == k
        summary, arrays = fold_summary(logits, y, senders, held, classes, taxonomy, group_confidence, audiences)
        folds.append(summary)
        oof_probs[held] = arrays["probs"]
        for a, p in arrays["rotated"].items():
            oof_rotated[a][held] = p
        matrix += arrays["matrix"]
        log.info("fold %d: top-1 %.3f, ECE %.3f", k, summary["top1"], summary["ece"])
    agg = aggregate(folds)
    # every photo's probabilities from a temperature fitted without its fold: pooled OOF figures
    pooled, _, bins = classification_metrics(oof_probs, y, classes, taxonomy)
    report = {
        "command": command, "n": int(len(y)), "senders": int(len(np.unique(senders))), "folds": len(folds),
        "fold_sizes": [f["n"] for f in folds], "fold_senders": [f["senders"] for f in folds],
        "mean": {k: v["mean"] for k, v in agg.items()}, "spread": agg, "per_fold": folds,
        "oof_pooled": pooled, "oof_ece": pooled["ece"], "group_confidence": group_confidence,
    }
    report["must_reach"] = _must_reach(agg, folds, pooled["ece"])
    report["hedging_cost"] = _hedging_cost(agg)
    report["audience"] = audience_report.summary(audiences, agg, folds, accuracy_figures(
        oof_probs, y, audiences, classes, taxonomy, oof_rotated), REPORT_TARGETS, UNITS)
    if recomputed_by:
        report["recomputed_by"] = recomputed_by
    (out_dir / "cv.json").write_text(json.dumps(report, indent=1) + "\n")
    images = _plots(report, oof_probs, y, matrix, bins, classes, out_dir)
    images["audience"] = audience_report.plot(report["audience"], out_dir / "cv_audience.png")
    (out_dir / "cv.md").write_text(_markdown(report, images, classes))
    return report


def _hedging_cost(agg: dict) -> dict[str, dict[str, float]]:
    """Mean over folds at each target: realised accuracy and information gain of sender- and
    photo-level CRC, and the back-off baseline's gain at the same accuracy as DARTS."""
    out = {}
    for key in REPORT_TARGETS:
        row = {}
        for unit in UNITS:
            row[f"{unit}_accuracy"] = agg[f"hedged.{unit}.crc.{key}.accuracy"]["mean"]
            row[f"{unit}_gain"] = agg[f"hedged.{unit}.crc.{key}.mean_info_gain"]["mean"]
        for name in ("darts", "backoff"):
            k = f"hedged.backoff.{key}.{name}"
            row[f"{name}_gain_at_equal_accuracy"] = agg[k]["mean"] if k in agg else float("nan")
        row["sender_minus_photo_gain"] = row["sender_gain"] - row["photo_gain"]
        row["group_minus_photo_gain"] = row["group_gain"] - row["photo_gain"]
        out[key] = row
    return out


def _plots(report: dict, probs: np.ndarray, y: np.ndarray, matrix: np.ndarray, bins: list[dict],
           classes: list[str], out: Path) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    short = [c.split(".")[-1] for c in classes]
    folds = report["per_fold"]
    images = {
        "confusion": plots.confusion_matrix(matrix, short, out / "cv_confusion.png"),
        "reliability": plots.reliability_diagram(bins, report["oof_ece"], out / "cv_reliability.png",
                                                 title="out-of-fold,"),
    }
    # accuracy per fold, with the bars
    fig, ax = plt.subplots(figsize=(7, 3.8))
    keys = ["top1", "top1_top10", "top1_10way", "top3"]
    for j, key in enumerate(keys):
        vals = [f[key] for f in folds]
        ax.scatter([j] * len(vals), vals, color="C0", alpha=0.7)
        ax.errorbar(j + 0.15, np.mean(vals), yerr=np.std(vals, ddof=1), fmt="s", color="C1", capsize=4)
        if key in MUST_REACH:
            ax.hlines(MUST_REACH[key], j - 0.3, j + 0.3, colors="r", linestyles="--")
    ax.set_xticks(range(len(keys)), keys); ax.set_ylabel("accuracy")
    ax.set_title("per held-out fold of people (dots), mean ± sd, bar (red)")
    images["folds"] = plots.save_figure(fig, out / "cv_folds.png")
    # hedged realised − target per fold, photo vs sender calibration
    fig, axes = plt.subplots(1, len(UNITS), figsize=(5 * len(UNITS), 3.8), sharey=True)
    for ax, unit in zip(axes, UNITS):
        for j, key in enumerate(REPORT_TARGETS):
            margins = [100 * (f["hedged"][unit]["crc"][key]["accuracy"] - float(key)) for f in folds]
            ax.scatter([j] * len(margins), margins, color="C0")
        ax.axhline(0, color="k", lw=0.8); ax.axhline(-100 * SHORTFALL_TOLERANCE, color="r", ls="--")
        ax.set_xticks(range(len(REPORT_TARGETS)), REPORT_TARGETS); ax.set_xlabel("target")
        ax.set_title(f"crc calibrated per {unit}")
    axes[0].set_ylabel("realised − target (points), per fold")
    images["hedged_folds"] = plots.save_figure(fig, out / "cv_hedged_folds.png")
    # information gain: the price of the per-person promise, and back-off
    fig, ax = plt.subplots(figsize=(6, 3.8))
    cost = report["hedging_cost"]
    xs = [float(k) for k in cost]
    ax.plot(xs, [cost[k]["photo_gain"] for k in cost], "o-", label="crc per photo")
    ax.plot(xs, [cost[k]["sender_gain"] for k in cost], "s-", label="crc per sender")
    ax.plot(xs, [cost[k]["group_gain"] for k in cost], "d-", label="crc per group of people")
    ax.plot(xs, [cost[k]["backoff_gain_at_equal_accuracy"] for k in cost], "^--", label="back-off (equal accuracy)")
    ax.set_xlabel("target accuracy"); ax.set_ylabel("mean information gain (bits)"); ax.legend()
    ax.set_title("mean over held-out folds")
    images["hedged_gain"] = plots.save_figure(fig, out / "cv_hedged_gain.png")
    pc = {s: {"precision": report["mean"][f"per_class.{c}.precision"], "recall": report["mean"][f"per_class.{c}.recall"],
              "support": int(report["oof_pooled"]["per_class"][c]["support"])}
          for s, c in zip(short, classes) if f"per_class.{c}.recall" in report["mean"]}
    images["per_class"] = plots.per_class_bars(pc, out / "cv_per_class.png")
    return images


def _markdown(r: dict, images: dict[str, Path], classes: list[str]) -> str:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    sp = r["spread"]
    cell = lambda k: f"{pct(sp[k]['mean'])} ± {100 * sp[k]['sd']:.1f} ({pct(sp[k]['min'])}–{pct(sp[k]['max'])})"  # noqa: E731
    lines = [f"# {r['folds']}-fold cross-validation grouped by sender", "",
             f"{r['n']} labelled photos of {r['senders']} senders; folds of {r['fold_sizes']} photos "
             f"({r['fold_senders']} senders). No sender is in two folds; each fold is predicted by a model trained "
             "on the others, with temperature and λ tables fitted on the other folds' out-of-fold predictions.", "",
             f"Command: `{r['command']}`", ""]
    if r.get("recomputed_by"):
        lines += [f"Report recomputed from the stored out-of-fold predictions by: `{r['recomputed_by']}`", ""]
    lines += ["| metric | mean ± sd over folds (min–max) |", "|---|---|"]
    for key, name in [("top1", "top-1 (17 classes)"), ("top3", "top-3"), ("top1_top10", "top-1 on the ten common classes"),
                      ("top1_10way", "top-1, ten-way"), ("ece", "ECE (15 bins)"),
                      ("rotation.-30", "top-1 rotated −30°"), ("rotation.0", "top-1 upright"), ("rotation.30", "top-1 rotated +30°")]:
        lines.append(f"| {name} | {cell(key)} |")
    lines.append(f"| temperature | {sp['temperature']['mean']:.3f} ± {sp['temperature']['sd']:.3f} |")
    lines += ["", f"Out-of-fold ECE over all {r['n']} photos pooled: {pct(r['oof_ece'])}.", "",
              "## Must reach", "", "| check | value | met |", "|---|---|---|"]
    for name, c in r["must_reach"].items():
        value = c.get("value")
        shown = f"{100 * value:.1f}" if value is not None else ", ".join(
            f"{k}: {100 * v:+.1f}" for k, v in c["worst_margin"].items())
        lines.append(f"| {name} | {shown} | {'yes' if c['met'] else '**no**'} |")
    lines += [""] + audience_report.markdown(r["audience"])
    lines += ["## Hedged answers, calibration fitted without the fold's people", "",
              "Realised accuracy of the crc answer per held-out fold (min over folds), and mean information gain "
              "(bits, 0 for a wrong answer); back-off's gain read at DARTS's realised accuracy.", "",
              "| target | per photo: mean realised (min) | gain | per sender: mean realised (min) | per-person accuracy | gain | "
              "per group: mean realised (min) | gain | DARTS at equal accuracy | back-off |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key in REPORT_TARGETS:
        p, s, g = (f"hedged.{unit}.crc.{key}" for unit in ("photo", "sender", "group"))
        c = r["hedging_cost"][key]
        lines.append(f"| {key} | {pct(sp[p + '.accuracy']['mean'])} ({pct(sp[p + '.accuracy']['min'])}) | "
                     f"{c['photo_gain']:.3f} | {pct(sp[s + '.accuracy']['mean'])} ({pct(sp[s + '.accuracy']['min'])}) | "
                     f"{pct(sp[s + '.accuracy_per_sender']['mean'])} | {c['sender_gain']:.3f} | "
                     f"{pct(sp[g + '.accuracy']['mean'])} ({pct(sp[g + '.accuracy']['min'])}) | {c['group_gain']:.3f} | "
                     f"{c['darts_gain_at_equal_accuracy']:.3f} | {c['backoff_gain_at_equal_accuracy']:.3f} |")
    lines += ["", "## Per class (mean over folds)", "", "| class | precision | recall (min–max) | photos |", "|---|---|---|---|"]
    for c in (c for c in classes if f"per_class.{c}.recall" in sp):
        rec = sp[f"per_class.{c}.recall"]
        lines.append(f"| {c} | {sp[f'per_class.{c}.precision']['mean']:.2f} | {rec['mean']:.2f} "
                     f"({rec['min']:.2f}–{rec['max']:.2f}) | {r['oof_pooled']['per_class'][c]['support']} |")
    lines += ["", "## Plots", ""] + [f"![{k}]({p.name})" for k, p in images.items()]
    return "\n".join(lines) + "\n"
