"""How many held-back people the promotion gate needs before it may decide (issue [L]).

The gate (``services/trainer/jobs/gate.py``) promotes a candidate when its pooled top-1 on the
held-back people is within the tolerance of the active version's and the lower end of the 90 %
per-person bootstrap interval of (candidate − active) is too. With few people that interval is
too narrow (a percentile bootstrap over n people underestimates the spread of their mean, and
people differ a lot), so a worse candidate can pass: the reduced-scale run in docs/learning.md
promoted one on 7 people that the judge people did not confirm.

This script measures it on real predictions. Every recorded CV run (``reports/cv/*/oof.npz``: the
out-of-fold predictions of 4,278 photos of 258 people, all on the same person-disjoint folds),
and the members' log-probability averages as the served pairs are, is a "version". For every
ordered pair (candidate, active) the **population** per-person difference Δ (the mean over all
small senders of each person's top-1 difference) is what the next new person would see. Held-back
sets are drawn as the gate sees them: ``n`` whole people from the small senders (≤ 150 photos,
the users), without replacement, ``--draws`` times per n; the gate's own rule
(``gate.per_person`` + ``gate.compare``'s top-1 checks; the hedged shortfall is not simulated)
decides each draw. Reported per n: how often a candidate that is **worse beyond the tolerance**
(Δ < −tolerance) is promoted (the error the minimum must bound), how often one that is worse at
all (Δ < 0) is, and how often a better one (Δ > +tolerance) is (the price of a larger minimum).

    python bench/gate_min_people.py --out docs/learning/gate_min_people.json
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import permutations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.trainer.jobs.gate import per_person  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAIRS = {  # the members' log-probabilities averaged, as the served pairs combine them
    "pair lite2-b19 + lite0-b13": ("2026-12-02-lite2-260-s19", "2026-12-02-lite0-260-s13"),
    "pair lite2 + lite0 (heads)": ("2026-12-02-lite2-v4", "2026-12-02-lite0-260-v4"),
}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def versions(reports: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(top-1 hits per version, sender per photo), photos in id order."""
    logits, labels, senders = {}, None, None
    for f in sorted(reports.glob("*/oof.npz")):
        d = np.load(f, allow_pickle=True)
        order = np.argsort(d["ids"])
        logits[f.parent.name] = d["logits_0"][order]
        if labels is None:
            labels, senders = d["labels"][order], d["senders"][order].astype(str)
    hits = {name: (z.argmax(1) == labels).astype(np.float64) for name, z in logits.items()}
    for name, (a, b) in PAIRS.items():
        if a in logits and b in logits:
            hits[name] = ((_log_softmax(logits[a]) + _log_softmax(logits[b])).argmax(1) == labels).astype(np.float64)
    return hits, senders


def gate_promotes(diff: np.ndarray, persons: np.ndarray, cand_top1: float, act_top1: float, tolerance: float,
                  seed: int) -> bool:
    """The gate's top-1 rule (``gate.compare``): pooled top-1 within the tolerance and the lower end
    of the per-person interval within it too."""
    if cand_top1 < act_top1 - tolerance:
        return False
    return per_person(diff, list(persons), seed=seed)["lo"] >= -tolerance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=Path, default=ROOT / "reports" / "cv")
    ap.add_argument("--people", type=int, nargs="+", default=[5, 7, 10, 15, 20, 25, 30, 40, 60])
    ap.add_argument("--draws", type=int, default=300, help="held-back sets drawn per (pair, n)")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--max-sender-photos", type=int, default=150)
    ap.add_argument("--max-rate", type=float, default=0.05,
                    help="the default is the smallest n whose promotion rate of worse-beyond-tolerance candidates is ≤ this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--plot", type=Path, help="PNG of the rates against n")
    args = ap.parse_args()

    hits, senders = versions(args.reports)
    people, who, counts = np.unique(senders, return_inverse=True, return_counts=True)
    small = np.flatnonzero(counts <= args.max_sender_photos)
    photos_of = [np.flatnonzero(who == j) for j in range(len(people))]
    per = {name: np.bincount(who, h, len(people)) / counts for name, h in hits.items()}
    rng = np.random.default_rng(args.seed)
    pairs = []
    for cand, act in permutations(sorted(hits), 2):
        delta = float((per[cand] - per[act])[small].mean())
        rows = []
        for n in args.people:
            promoted = photos = 0
            for d in range(args.draws):
                chosen = rng.choice(small, size=n, replace=False)
                idx = np.concatenate([photos_of[j] for j in chosen])
                diff = hits[cand][idx] - hits[act][idx]
                photos += len(idx)
                promoted += gate_promotes(diff, who[idx], hits[cand][idx].mean(), hits[act][idx].mean(),
                                          args.tolerance, seed=d)
            rows.append({"people": n, "promoted": promoted / args.draws, "mean_photos": photos / args.draws})
        pairs.append({"candidate": cand, "active": act, "delta_per_person": delta, "by_people": rows})
        print(f"{cand} vs {act}: Δ per person {100 * delta:+.1f} points; promoted "
              + ", ".join(f"n={r['people']}: {100 * r['promoted']:.0f}%" for r in rows), flush=True)

    def rate(select, n: int) -> float | None:
        chosen = [r["promoted"] for p in pairs if select(p["delta_per_person"]) for r in p["by_people"]
                  if r["people"] == n]
        return float(np.mean(chosen)) if chosen else None

    def worst(select, n: int) -> float | None:
        chosen = [r["promoted"] for p in pairs if select(p["delta_per_person"]) for r in p["by_people"]
                  if r["people"] == n]
        return float(np.max(chosen)) if chosen else None

    tol = args.tolerance
    summary = [{"people": n,
                "worse_beyond_tolerance_mean": rate(lambda d: d < -tol, n),
                "worse_beyond_tolerance_worst_pair": worst(lambda d: d < -tol, n),
                "worse_at_all_mean": rate(lambda d: d < 0, n),
                "better_beyond_tolerance_mean": rate(lambda d: d > tol, n)}
               for n in args.people]
    def smallest(key: str) -> int | None:
        """The smallest n from which ``key`` stays ≤ max-rate for every larger n."""
        ok = [s["people"] for s in summary if (s[key] or 0) <= args.max_rate]
        return next((n for n in args.people if all(m in ok for m in args.people if m >= n)), None)

    choice = {"mean": smallest("worse_beyond_tolerance_mean"), "worst_pair": smallest("worse_beyond_tolerance_worst_pair")}
    print("\npeople | worse beyond tol: mean / worst pair | worse at all | better beyond tol")
    for s in summary:
        print(f"{s['people']:>6} | {100 * s['worse_beyond_tolerance_mean']:.1f} % / "
              f"{100 * s['worse_beyond_tolerance_worst_pair']:.1f} % | {100 * s['worse_at_all_mean']:.1f} % | "
              f"{100 * s['better_beyond_tolerance_mean']:.1f} %")
    print(f"smallest n from which a worse-beyond-tolerance candidate is promoted in ≤ {100 * args.max_rate:.0f} % of "
          f"held-back sets: on average over such pairs {choice['mean']}, for every such pair {choice['worst_pair']}")
    if args.plot:
        _plot(summary, tol, args.plot)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "tolerance": tol, "draws": args.draws,
                                        "max_rate": args.max_rate, "small_senders": int(len(small)),
                                        "versions": sorted(hits), "summary": summary, "choice": choice,
                                        "pairs": pairs}, indent=2) + "\n")


def _plot(summary: list[dict], tol: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.trainer.evaluation.plots import save_figure

    n = [s["people"] for s in summary]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(n, [100 * s["worse_beyond_tolerance_mean"] for s in summary], "o-", color="tab:red",
            label=f"worse by > {100 * tol:.0f} point: mean over pairs")
    ax.plot(n, [100 * s["worse_beyond_tolerance_worst_pair"] for s in summary], "x--", color="tab:red",
            label="worse by > tolerance: worst pair")
    ax.plot(n, [100 * s["better_beyond_tolerance_mean"] for s in summary], "^-", color="tab:green",
            label=f"better by > {100 * tol:.0f} point: mean over pairs")
    ax.axhline(5, color="grey", ls=":", lw=1)
    ax.set_xlabel("held-back people (small senders, drawn from 4,278 CV photos)")
    ax.set_ylabel("held-back sets in which the gate promotes (%)")
    ax.set_title("The gate's per-person rule against the number of held-back people")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
