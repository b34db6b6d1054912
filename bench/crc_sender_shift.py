"""Does the hedger's accuracy guarantee hold for new people? (not a test)

Conformal risk control promises ``P(error) ≤ ε`` for a new photo *exchangeable* with the
calibration photos. Wardrobe's photos come in clusters, one per sender (same floor, same light,
same labelling habits), and a new user is a new sender. This bench pools held-out photos (saved
by ``bench/compare_models.py --save-probs``, which records senders), then many times over:

* ``photo`` resplits: calibration and test photos drawn at random, photo by photo
  (exchangeable, the guarantee's own assumption: the mean realised accuracy must reach the target);
* ``sender`` resplits: whole senders drawn (the deployment case: test senders are new people).

Each resplit calibrates on its calibration part (as the trainer does: ``crc`` photo-level, plain
``darts``, and ``crc-sender``: conformal risk control with senders as the exchangeable units,
which bounds the expected error rate of a new sender) and measures realised accuracy and mean
information gain on its test part.

    .venv/bin/python bench/compare_models.py --data ../shared/data/clothing --split-file models/split.json \\
        --splits val,cal,test --save-probs runs/probs models/2026-11-27-lite0
    .venv/bin/python bench/crc_sender_shift.py --model models/2026-11-27-lite0 runs/probs/2026-11-27-lite0_*.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from shared.hedging.calibration import (
    crc_lambda,
    crc_lambda_by_sender,
    crc_thresholds,
    darts_accuracy_steps,
    darts_lambda,
)
from shared.hedging.darts import answer_gain, darts_path, node_probabilities, path_choice, tree_arrays
from shared.model_card import ModelCard
from shared.taxonomy import load_taxonomy

TARGETS = (0.8, 0.9, 0.95, 0.98, 0.99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model version dir (rewards, λ cap)")
    ap.add_argument("--resplits", type=int, default=400)
    ap.add_argument("--cal-share", type=float, default=475 / 1636, help="share of the pool used for calibration")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("probs", nargs="+", type=Path, help="npz files with probs, labels and senders")
    args = ap.parse_args()

    taxonomy = load_taxonomy()
    cal = ModelCard.load(args.model).calibration
    rewards, lam_max = np.asarray(cal["rewards"]), float(cal["lam_max"])
    loaded = [np.load(p) for p in args.probs]
    probs = np.concatenate([d["probs"] for d in loaded]).astype(np.float64)
    y = np.concatenate([d["labels"] for d in loaded])
    senders = np.concatenate([d["senders"] for d in loaded])
    arrays = tree_arrays(taxonomy)
    path = darts_path(node_probabilities(probs / probs.sum(1, keepdims=True), arrays.leaf_matrix),
                      rewards, arrays.lca, lam_max)
    tau = crc_thresholds(path, y, arrays.leaf_mask)  # per photo; does not depend on the resplit
    unique_senders = np.unique(senders)
    print(f"{len(y)} photos from {len(unique_senders)} senders; {args.resplits} resplits each way")

    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for scheme in ("photo", "sender"):
        for _ in range(args.resplits):
            if scheme == "photo":
                in_cal = rng.random(len(y)) < args.cal_share
            else:
                chosen = set(rng.permutation(unique_senders)[: round(args.cal_share * len(unique_senders))])
                in_cal = np.array([s in chosen for s in senders])
            c, t = np.flatnonzero(in_cal), np.flatnonzero(~in_cal)
            sub = path._replace(nodes=path.nodes[c], breaks=path.breaks[c], nested=path.nested[c])
            lams, acc = darts_accuracy_steps(sub, y[c], arrays.leaf_mask)
            for target in TARGETS:
                chosen_lam = {
                    "crc": (crc_lambda(tau[c], target, lam_max), True),
                    "crc-sender": (crc_lambda_by_sender(tau[c], senders[c], target, lam_max), True),
                    "darts": (darts_lambda(lams, acc, target, lam_max)[0], False),
                }
                for method, (lam, nested) in chosen_lam.items():
                    nodes = path_choice(path, lam, nested)[t]
                    right = arrays.leaf_mask[nodes, y[t]]
                    cell = results.setdefault(f"{scheme}/{method}", {}).setdefault(str(target), {"acc": [], "gain": []})
                    cell["acc"].append(float(right.mean()))
                    cell["gain"].append(float(answer_gain(nodes, y[t], arrays.leaf_mask, arrays.info_gain).mean()))

    summary = {}
    print(f"{'resplit/method':<20}{'target':>7}{'mean acc':>10}{'5th pct':>9}{'< target':>10}{'< t−1pt':>9}{'gain':>7}")
    for key, by_target in results.items():
        for target, cell in by_target.items():
            acc, gain = np.array(cell["acc"]), np.array(cell["gain"])
            row = {"mean_accuracy": float(acc.mean()), "p5_accuracy": float(np.percentile(acc, 5)),
                   "share_below_target": float((acc < float(target) - 1e-12).mean()),
                   "share_below_target_minus_1pt": float((acc < float(target) - 0.01 - 1e-12).mean()),
                   "mean_info_gain": float(gain.mean())}
            summary.setdefault(key, {})[target] = row
            print(f"{key:<20}{target:>7}{row['mean_accuracy']:>10.4f}{row['p5_accuracy']:>9.4f}"
                  f"{row['share_below_target']:>10.2f}{row['share_below_target_minus_1pt']:>9.2f}{row['mean_info_gain']:>7.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": len(y), "senders": len(unique_senders), "resplits": args.resplits,
                                         "results": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
