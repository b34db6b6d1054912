"""A `wardrobe cv` run's out-of-fold predictions on the photos of one split (not a test: it reads
a run directory), to set a cross-validated recipe beside a model evaluated on that split.

    .venv/bin/python bench/cv_on_split.py --run runs/cv5 --split-file models/split.json --split test \
        [--compare models/2026-11-27-lite0/eval/test.json]

Each photo's probabilities come from the fold model that never saw its sender, at the temperature
fitted on the other folds' out-of-fold logits (as in the CV report), so both sides are
predictions for people the model never saw. Prints top-1, top1_top10, top1_10way and ECE, and
the other model's figures from its evaluation JSON when given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from services.trainer.model.calibrate import fit_temperature, softmax
from services.trainer.pipelines.cv import load_oof
from services.trainer.evaluation.evaluate import classification_metrics
from shared.taxonomy import load_taxonomy

KEYS = ("top1", "top3", "top1_top10", "top1_10way", "ece")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a wardrobe cv --out directory (oof.npz)")
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--compare", type=Path, help="an evaluation JSON of another model on the same split")
    args = ap.parse_args()
    taxonomy = load_taxonomy()
    oof = load_oof(args.run)
    ids = set(json.loads(args.split_file.read_text())[args.split])
    y, folds, logits = oof["labels"], oof["folds"], oof["logits_0"]
    probs = np.zeros_like(logits)
    for k in np.unique(folds):
        held = folds == k
        probs[held] = softmax(logits[held], fit_temperature(logits[~held], y[~held]))
    keep = np.array([i in ids for i in oof["ids"]])
    metrics, _, _ = classification_metrics(probs[keep], y[keep], [str(c) for c in oof["classes"]], taxonomy)
    rows = {"cv out-of-fold": {k: metrics[k] for k in KEYS}}
    if args.compare:
        other = json.loads(args.compare.read_text())
        rows[other.get("model_version", str(args.compare))] = {k: other[k] for k in KEYS}
    print(f"{int(keep.sum())} photos of split '{args.split}' ({len(ids)} in the split file)")
    print("| predictions | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * row[k]:.1f} %" for k in KEYS) + " |")


if __name__ == "__main__":
    main()
