"""Several model versions, and every average of their probabilities (ensembles), on one split
(not a test: it reads the dataset).

    .venv/bin/python bench/compare_models.py --data ../shared/data/clothing --split-file models/split.json \
        --splits val,test MODEL_DIR [MODEL_DIR ...]

Prints top-1 and ECE per split for each single model and each combination.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from services.trainer.model.calibrate import expected_calibration_error
from services.trainer.data.dataset import load_dataset
from services.trainer.evaluation.evaluate import ModelRunner
from services.trainer.data.dataset import load_photo
from shared.taxonomy import load_taxonomy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--save-probs", type=Path, help="write MODEL_SPLIT.npz (probs, labels) here for later analysis")
    ap.add_argument("models", nargs="+", type=Path)
    args = ap.parse_args()
    taxonomy = load_taxonomy()
    dataset = load_dataset(args.data, taxonomy)
    split = json.loads(args.split_file.read_text())
    index = {leaf: i for i, leaf in enumerate(taxonomy.leaves)}
    runners = {m.name: ModelRunner(m) for m in args.models}
    probs: dict[tuple[str, str], np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name in args.splits.split(","):
        ids = set(split[name])
        samples = [s for s in dataset.classified if s.image_id in ids]
        photos = [load_photo(s.path) for s in samples]
        labels[name] = np.array([index[s.leaf] for s in samples])
        for model, runner in runners.items():
            probs[(model, name)] = runner.probabilities(photos, desc=f"{model} {name}")
            if args.save_probs:
                args.save_probs.mkdir(parents=True, exist_ok=True)
                np.savez(args.save_probs / f"{model}_{name}.npz", probs=probs[(model, name)], labels=labels[name],
                         ids=np.array([s.image_id for s in samples]), senders=np.array([s.sender for s in samples]))
    for k in range(1, len(runners) + 1):
        for combo in itertools.combinations(runners, k):
            cells = []
            for name, y in labels.items():
                p = np.mean([probs[(m, name)] for m in combo], axis=0)
                ece, _ = expected_calibration_error(p, y)
                cells.append(f"{name} top-1 {np.mean(p.argmax(1) == y):.3f} ECE {ece:.3f}")
            print(" + ".join(combo), "|", " | ".join(cells))


if __name__ == "__main__":
    main()
