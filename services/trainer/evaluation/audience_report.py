"""The CV report's audience section: [J2]'s figures for the people Wardrobe will meet, its bars, a
markdown table and a PNG (the metrics themselves are ``evaluation.audience``'s).

Accuracy figures are means over the held-out folds of people (as the report's headline); ECE is
read on the pooled out-of-fold probabilities (each photo's from a temperature fitted without its
fold), as the report's headline ECE. The hedged promise is checked on each fold's small senders
alone: one fold of people is one group of new people, and its small senders are the group
Wardrobe will meet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from services.trainer.evaluation import plots
from services.trainer.evaluation.audience import AUDIENCE_NAMES, WEIGHTINGS, Audiences

__all__ = ["summary", "markdown", "plot", "MUST_REACH_SMALL", "MAX_SMALL_ECE", "MIN_KIDS_TOP1", "MAX_SMALL_ROTATION_DROP",
           "HEDGED_TOLERANCE"]

# [J2]'s bars, for the small senders, photo-weighted and person-weighted alike
MUST_REACH_SMALL = {"top1": 0.85, "top1_top10": 0.88}
MAX_SMALL_ECE = 0.03
MIN_KIDS_TOP1 = 0.75  # children's clothes of small senders
MAX_SMALL_ROTATION_DROP = 0.02  # each side, ±30°
HEDGED_TOLERANCE = 0.01  # the promise: realised ≥ target − 1 point on every fold's small senders
ACCURACY_KEYS = ("top1", "top1_top10", "top1_10way")


def _fold_stat(agg: dict, key: str) -> dict[str, float] | None:
    s = agg.get(key)
    return None if s is None else {k: s[k] for k in ("mean", "sd", "min", "max", "folds")}


def summary(aud: Audiences, agg: dict, folds: list[dict], pooled: dict[str, Any], targets: tuple[str, ...],
            units: tuple[str, ...]) -> dict[str, Any]:
    """The report's ``audience`` object: per audience and weighting the fold statistics (mean, sd,
    min, max) of every accuracy figure and rotation drop, and the pooled out-of-fold figures (ECE
    among them); the hedged accuracy on every fold's small senders; [J2]'s checks."""
    table: dict[str, Any] = {}
    for name in (n for n in pooled if n in aud.masks):
        entry: dict[str, Any] = {"n": pooled[name]["n"], "senders": pooled[name]["senders"]}
        for w in WEIGHTINGS:
            folded = {m: _fold_stat(agg, f"audience.{name}.{w}.{m}") for m in (*ACCURACY_KEYS, "ece")}
            for side in ("-30", "30"):
                folded[f"rotation_drop.{side}"] = _fold_stat(agg, f"audience.{name}.{w}.rotation_drop.{side}")
            entry[w] = {"folds": {k: v for k, v in folded.items() if v is not None}, "pooled": pooled[name][w]}
        table[name] = entry
    hedged: dict[str, Any] = {}
    for unit in units:
        hedged[unit] = {}
        for key in targets:
            per_fold = {w: [f["audience_hedged"][unit][key].get("small", {}).get(w) for f in folds] for w in WEIGHTINGS}
            hedged[unit][key] = {w: {"per_fold": v, "mean": float(np.mean([x for x in v if x is not None])),
                                     "worst_margin": min(x - float(key) for x in v if x is not None)}
                                 for w, v in per_fold.items() if any(x is not None for x in v)}
    out = {"small_max": aud.small_max, "kids_known": "kids" in aud.masks, "audiences": table,
           "hedged_small": hedged}
    out["must_reach"] = _must_reach(out, units)
    return out


def _must_reach(s: dict, units: tuple[str, ...]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    small = s["audiences"].get("small")
    if small is None:
        return checks
    for w in WEIGHTINGS:
        folds, pooled = small[w]["folds"], small[w]["pooled"]
        for key, bar in MUST_REACH_SMALL.items():
            if key in folds:
                v = folds[key]["mean"]
                checks[f"small.{w}.{key}_mean>={bar}"] = {"value": v, "met": v >= bar}
        checks[f"small.{w}.oof_ece<={MAX_SMALL_ECE}"] = {"value": pooled["ece"], "met": pooled["ece"] <= MAX_SMALL_ECE}
        drops = [folds[f"rotation_drop.{a}"]["mean"] for a in ("-30", "30") if f"rotation_drop.{a}" in folds]
        if drops:
            checks[f"small.{w}.rotation_30_drop<={MAX_SMALL_ROTATION_DROP}"] = {
                "value": max(drops), "met": max(drops) <= MAX_SMALL_ROTATION_DROP}
        kids = s["audiences"].get("small_kids")
        if kids and "top1" in kids[w]["folds"]:
            v = kids[w]["folds"]["top1"]["mean"]
            checks[f"small_kids.{w}.top1_mean>={MIN_KIDS_TOP1}"] = {"value": v, "met": v >= MIN_KIDS_TOP1}
    for unit in units:
        worst = {k: v["photos"]["worst_margin"] for k, v in s["hedged_small"][unit].items() if "photos" in v}
        if worst:
            checks[f"hedged_{unit}_small_every_fold>=target-{HEDGED_TOLERANCE}"] = {
                "worst_margin": worst, "met": all(m >= -HEDGED_TOLERANCE for m in worst.values())}
    return checks


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def markdown(s: dict) -> list[str]:
    """The report's section: one row per audience and weighting, the hedged promise on the small
    senders, [J2]'s checks."""
    lines = ["## For the people Wardrobe will meet (audiences)", "",
             f"Small senders: at most {s['small_max']} photos in this set (big: more). *photos*: every photo counts "
             "once; *people*: every person counts once (the mean over people of each person's figure). Top-1 and "
             "the rotation drop: mean ± sd over folds; ECE: pooled out-of-fold (15 bins, weighted likewise)."
             + ("" if s["kids_known"] else " No kids flag in these predictions: children's clothes not reported "
                                           "(pass --data)."), "",
             "| audience | weighting | photos | people | top-1 | top1_top10 | top1_10way | ECE | drop −30° / +30° (points) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in s["audiences"].items():
        for w in WEIGHTINGS:
            f, p = entry[w]["folds"], entry[w]["pooled"]
            cell = lambda k: f"{_pct(f[k]['mean'])} ± {100 * f[k]['sd']:.1f}" if k in f else "–"  # noqa: E731
            drops = " / ".join(f"{100 * f[f'rotation_drop.{a}']['mean']:+.1f}" if f"rotation_drop.{a}" in f else "–"
                               for a in ("-30", "30"))
            lines.append(f"| {AUDIENCE_NAMES[name]} | {w} | {entry['n']} | {entry['senders']} | {cell('top1')} | "
                         f"{cell('top1_top10')} | {cell('top1_10way')} | {_pct(p['ece'])} | {drops} |")
    units = list(s["hedged_small"])
    lines += ["", "Hedged (crc) on each fold's small senders alone, calibration fitted without the fold: realised "
                  "accuracy, mean over folds (worst fold − target, points); per person: the mean over the small "
                  "senders of each one's accuracy.", "",
              "| target | " + " | ".join(f"per {u}: photos | per {u}: people" for u in units) + " |",
              "|---|" + "---|---|" * len(units)]
    targets = list(s["hedged_small"][units[0]]) if units else []
    for key in targets:
        cells = []
        for u in units:
            for w in WEIGHTINGS:
                v = s["hedged_small"][u][key].get(w)
                cells.append("–" if v is None else f"{_pct(v['mean'])} ({100 * v['worst_margin']:+.1f})")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "[J2]'s bars (small senders):", "", "| check | value | met |", "|---|---|---|"]
    for name, c in s["must_reach"].items():
        shown = (f"{100 * c['value']:.1f}" if "value" in c
                 else ", ".join(f"{k}: {100 * v:+.1f}" for k, v in c["worst_margin"].items()))
        lines.append(f"| {name} | {shown} | {'yes' if c['met'] else '**no**'} |")
    return lines + [""]


# the groups the plot compares, in order: (audience, weighting, label)
PLOT_GROUPS = (("all", "photos", "all photos"), ("small", "photos", "small senders\n(photos)"),
               ("small", "people", "small senders\n(people)"), ("all", "people", "mean over\nall people"),
               ("kids", "photos", "children's\nclothes"), ("adults", "photos", "adults'\nclothes"),
               ("small_kids", "photos", "small senders,\nchildren's"), ("big", "photos", "big senders\n(photos)"))


def plot(s: dict, path: Path) -> Path:
    """Top-1 (mean ± sd over folds) and pooled ECE per group, with [J2]'s bars."""
    import matplotlib.pyplot as plt

    groups = [(a, w, label) for a, w, label in PLOT_GROUPS if a in s["audiences"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    xs = np.arange(len(groups))
    top1 = [s["audiences"][a][w]["folds"].get("top1", {}) for a, w, _ in groups]
    left.bar(xs, [t.get("mean", np.nan) for t in top1], yerr=[t.get("sd", 0) for t in top1], capsize=3,
             color=["C1" if a.startswith("small") else "C0" for a, _, _ in groups])
    left.axhline(MUST_REACH_SMALL["top1"], color="r", ls="--", lw=1, label=f"small senders: ≥ {MUST_REACH_SMALL['top1']:.0%}")
    left.axhline(MIN_KIDS_TOP1, color="m", ls=":", lw=1, label=f"children's: ≥ {MIN_KIDS_TOP1:.0%}")
    left.set_ylim(0.4, 1.0); left.set_ylabel("top-1 (mean over folds)"); left.legend(loc="upper right", fontsize=8)
    ece = [s["audiences"][a][w]["pooled"]["ece"] for a, w, _ in groups]
    right.bar(xs, ece, color=["C1" if a.startswith("small") else "C0" for a, _, _ in groups])
    right.axhline(MAX_SMALL_ECE, color="r", ls="--", lw=1, label=f"small senders: ≤ {MAX_SMALL_ECE:.0%}")
    right.set_ylabel("ECE, pooled out-of-fold"); right.legend(loc="upper left", fontsize=8)
    for ax in (left, right):
        ax.set_xticks(xs, [label.replace("\n", " ") for _, _, label in groups], fontsize=7, rotation=35, ha="right")
    fig.suptitle(f"By audience (small senders: ≤ {s['small_max']} photos)")
    return plots.save_figure(fig, path)
