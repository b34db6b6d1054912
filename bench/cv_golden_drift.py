"""How far ``wardrobe cv``'s out-of-fold logits on the golden test's tiny data land from
``tests/trainer/pipelines/cv_golden.npz`` on this machine, and how far a real change of the fit
(another seed, another batch size, another epoch) moves them: the two numbers the golden test's
bound sits between (float drift across CPUs vs a changed training loop).

    .venv/bin/python bench/cv_golden_drift.py
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.trainer.pipelines.cv import cross_validate, load_oof  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402
from tests.trainer.conftest import write_dataset  # noqa: E402
from tests.trainer.pipelines.test_cv import TINY  # noqa: E402


def main() -> None:
    taxonomy = load_taxonomy()
    root = Path(tempfile.mkdtemp(prefix="cv-golden-"))
    labels = [taxonomy.nodes[leaf].labels[0] for leaf in taxonomy.leaves[:6]]
    data = write_dataset(root / "data", labels, per_label=6, senders=9,
                         extra_rows=[("img-00-000", "0", "Not sure")])  # as the test's fixture
    golden = np.load(ROOT / "tests/trainer/pipelines/cv_golden.npz")
    variants = {"same recipe": TINY, "seed 1": replace(TINY, seed=1), "batch 8": replace(TINY, batch_size=8),
                "2 epochs": replace(TINY, epochs=2)}
    rows = []
    for name, recipe in variants.items():
        cross_validate(data, taxonomy, root / name.replace(" ", "-"), recipe, folds=3)
        oof = load_oof(root / name.replace(" ", "-"))
        for key in ("logits_0", "logits_30"):
            drift = np.abs(oof[key] - golden[key])
            agree = float((oof[key].argmax(1) == golden[key].argmax(1)).mean())
            rows.append(f"| {name} | {key} | {drift.max():.3f} | {drift.mean():.3f} | {agree:.3f} |")
    print("| run | logits | max abs diff | mean abs diff | argmax agreement |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
