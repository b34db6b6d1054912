"""DARTS vs the back-off baseline at equal realised accuracy, on any union of saved splits
(more photos than the test split alone, for a less noisy comparison). Not a test: it reads
probabilities saved from the dataset by ``bench/compare_models.py --save-probs DIR``.

    .venv/bin/python bench/compare_models.py --data ../shared/data/clothing --split-file models/split.json \\
        --splits val,cal,test --save-probs runs/probs models/2026-11-27-lite0
    .venv/bin/python bench/darts_vs_backoff.py --model models/2026-11-27-lite0 runs/probs/2026-11-27-lite0_*.npz

The λ sweep does not use the calibration tables (only their rewards), so pooling the
calibration split in does not favour either method. Prints the difference in mean information
gain (bits) at each report target, with a paired-bootstrap 95 % interval, and the same comparison
in a "calibrated world" (labels drawn from the model's own probabilities,
``services.trainer.evaluation.comparison.calibrated_world_difference``): what DARTS should gain in expectation,
and how often a split of this many photos shows it behind anyway.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from services.trainer.evaluation.comparison import bootstrap_gain_difference, calibrated_world_difference, compare_darts_backoff
from shared.model_card import ModelCard
from shared.taxonomy import load_taxonomy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model version dir (its calibration's rewards)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--temperature-factor", type=float, default=1.0,
                    help="re-temper the saved probabilities first (p^(1/K), renormalised; K > 1 softer): "
                         "how much each method depends on the model's calibration")
    ap.add_argument("probs", nargs="+", type=Path, help="npz files with probs and labels")
    args = ap.parse_args()
    taxonomy = load_taxonomy()
    calibration = ModelCard.load(args.model).calibration
    loaded = [np.load(p) for p in args.probs]
    probs = np.concatenate([d["probs"] for d in loaded])
    labels = np.concatenate([d["labels"] for d in loaded])
    if args.temperature_factor != 1.0:
        logp = np.log(np.clip(probs, 1e-12, 1.0)) / args.temperature_factor
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    cmp = compare_darts_backoff(probs, labels, taxonomy, calibration)
    boot = bootstrap_gain_difference(probs, labels, taxonomy, calibration, n_boot=args.boot)
    world = calibrated_world_difference(probs, taxonomy, calibration, n_draws=args.boot)
    print(f"{len(labels)} photos from {', '.join(p.name for p in args.probs)}, temperature factor {args.temperature_factor:g}")
    print(f"over the accuracy range {cmp['accuracy_range'][0]:.3f}–{cmp['accuracy_range'][1]:.3f}: "
          f"mean difference {cmp['mean_diff']:+.3f} bits, DARTS ≥ back-off on {cmp['share_ge']:.0%} of the grid")
    print("target   DARTS  back-off  DARTS−back-off  95% interval      | calibrated world: expected   sd  DARTS behind")
    for key, v in boot["targets"].items():
        at = cmp["at_targets"].get(key, {})
        w = world["targets"].get(key, {})
        print(f"{key:>6}  {at.get('darts', float('nan')):6.3f}  {at.get('backoff', float('nan')):8.3f}"
              f"  {v['diff']:+14.3f}  [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
              f"  | {w.get('expected', float('nan')):+26.3f}  {w.get('sd', float('nan')):.3f}"
              f"  {100 * w.get('share_below', float('nan')):9.0f}%")
    print(f"calibrated world: DARTS at least as good at every target on {100 * world['share_all_ge']:.0f}% "
          f"of {world['n_draws']} simulated splits of {len(labels)} photos, and on "
          f"{100 * world['range_share_ge']['mean']:.0f}% of the accuracy range on average "
          f"({100 * world['range_share_ge']['p05']:.0f}–{100 * world['range_share_ge']['p95']:.0f}%, 5th–95th percentile)")
    print("DARTS − back-off along the range (accuracy: bits):")
    print("  " + "  ".join(f"{a:.3f}: {d - b:+.3f}" for a, d, b in
                           list(zip(cmp["accuracy"], cmp["darts"], cmp["backoff"]))[::4]))


if __name__ == "__main__":
    main()
