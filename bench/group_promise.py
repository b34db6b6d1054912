"""Benchmark: the group promise's confidence, checked by leaving people out (not a test).

    .venv/bin/python bench/group_promise.py RUN [RUN ...] [--confidence 0.95 0.98]

RUN: ``wardrobe cv`` run directories (or report directories holding their ``oof.npz``); several
are averaged as ``wardrobe ensemble`` does. For each confidence, the CV report's hedged check
(every held-out fold of people within 1 point of every target, calibration fitted on the other
folds) and the mean information gain per promise, printed as a table. docs/hedging.md quotes it:
0.95 and 0.98 on the shipped pair, 0.98 on the lean Lite0 and on Lite2 alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.trainer.pipelines.cv import load_oof  # noqa: E402
from services.trainer.pipelines.ensemble import combine_oof  # noqa: E402
from services.trainer.evaluation.crossval import cv_report  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="wardrobe cv runs (several: averaged, same folds)")
    ap.add_argument("--confidence", nargs="+", type=float, default=[0.95, 0.98])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    oof = combine_oof(args.runs) if len(args.runs) > 1 else load_oof(args.runs[0])
    taxonomy = load_taxonomy()
    print(f"runs: {', '.join(str(r) for r in args.runs)}")
    print("confidence | unit | worst fold − target (points) at 0.8 / 0.9 / 0.95 / 0.98 / 0.99 | every fold ≥ −1 "
          "| mean gain (bits) at the same targets")
    for confidence in args.confidence:
        with tempfile.TemporaryDirectory() as out:
            report = cv_report(oof, taxonomy, Path(out), group_confidence=confidence)
        for unit in ("photo", "sender", "group"):
            check = report["must_reach"][f"hedged_{unit}_every_fold>=target-0.01"]
            margins = " / ".join(f"{100 * v:+.1f}" for v in check["worst_margin"].values())
            gains = " / ".join(f"{row[f'{unit}_gain']:.3f}" for row in report["hedging_cost"].values())
            print(f"{confidence} | {unit} | {margins} | {'yes' if check['met'] else 'no'} | {gains}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
