"""Finding wrong labels in the training split with the network itself (confident learning).

Some labels in a photo set collected from people are wrong (a polo filed as a T-shirt, two
garments in one photo). A network fine-tuned on them spends capacity learning the noise, so
the trainer can leave out the photos whose label the network confidently disagrees with.

The network must not judge photos it was trained on (it would have memorised their labels),
so the training split is cut into K sender-disjoint folds and K fold models are trained with
the ordinary recipe, each on the other folds; every training photo gets out-of-fold
probabilities. cleanlab's ``find_label_issues`` (Northcutt, Jiang, Chuang, "Confident
learning", JAIR 2021) estimates the joint distribution of given and true labels from them and
flags the photos most likely mislabelled.

Only the training split is cleaned: validation, calibration and test keep their labels, so
the numbers stay comparable with models trained on everything.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.trainer.data.dataset import Sample, load_dataset, load_or_create_split, split_by_sender
from shared.recipe import Recipe
from shared.taxonomy import Taxonomy

__all__ = ["find_label_issues", "write_label_issues", "read_exclusions", "LabelIssues", "ISSUE_COLUMNS"]

log = logging.getLogger(__name__)

ISSUE_COLUMNS = ["image", "sender_id", "label", "suggested", "label_prob", "suggested_prob", "quality"]


@dataclass
class LabelIssues:
    csv_path: Path
    flagged: int
    n: int
    oof_top1: float  # accuracy of the out-of-fold predictions against the given labels


def _folds(samples: list[Sample], k: int, seed: int) -> list[list[str]]:
    parts = split_by_sender(samples, seed=seed, fractions={f"fold{i}": 1.0 / k for i in range(k)})
    return [parts[f"fold{i}"] for i in range(k)]


def find_label_issues(data_dir: Path, taxonomy: Taxonomy, out_dir: Path, split_file: Path,
                      recipe: Recipe | None = None, folds: int = 2, max_photos: int | None = None,
                      min_suggested_prob: float = 0.5, min_class_photos: int = 10) -> LabelIssues:
    """Write ``label_issues.csv`` (flagged training photos, worst first), ``oof_probs.npz`` and
    ``label_issues.png`` into ``out_dir``; fold models are built in a temporary directory."""
    from services.trainer.evaluation.evaluate import ModelRunner
    from services.trainer.data.dataset import load_photo
    from services.trainer.pipelines.train import train

    start = time.time()
    recipe = recipe or Recipe()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data_dir, taxonomy)
    split = load_or_create_split(dataset.samples, Path(split_file), seed=recipe.seed)
    by_id = {s.image_id: s for s in dataset.classified}
    train_samples = [by_id[i] for i in split["train"] if i in by_id][:max_photos]
    classes = taxonomy.leaves
    index = {leaf: i for i, leaf in enumerate(classes)}
    position = {s.image_id: n for n, s in enumerate(train_samples)}
    oof = np.full((len(train_samples), len(classes)), np.nan, dtype=np.float32)
    fold_photos: list[dict] = []  # photos per split of each fold model, as its card recorded them
    judged = np.zeros(len(train_samples), dtype=bool)  # the fold model saw enough of the photo's class

    with tempfile.TemporaryDirectory(prefix="wardrobe-folds-") as tmp:
        for k, held_out in enumerate(_folds(train_samples, folds, recipe.seed)):
            held = set(held_out)
            fold_split = {"train": [s.image_id for s in train_samples if s.image_id not in held],
                          "val": split["val"], "cal": split["cal"], "test": sorted(held)}
            # every other photo (the real test split, unlabelled ones) is listed as unused, so the
            # split loader does not hand it to a fold's training as a "new" photo
            listed = {i for ids in fold_split.values() for i in ids}
            fold_split["unused"] = sorted({i for ids in split.values() for i in ids} - listed)
            fold_file = Path(tmp) / f"split-fold{k}.json"
            fold_file.write_text(json.dumps(fold_split))
            log.info("fold %d/%d: training on %d photos, predicting %d", k + 1, folds,
                     len(fold_split["train"]), len(held))
            result = train(data_dir, Path(tmp), taxonomy, recipe, split_file=fold_file, version=f"fold{k}")
            fold_photos.append(result.card.data["photos_per_split"])
            runner = ModelRunner(result.model_dir, threads=recipe.threads)
            held_samples = [s for s in train_samples if s.image_id in held]
            probs = runner.probabilities([load_photo(s.path) for s in held_samples], desc=f"fold {k + 1} held out")
            oof[[position[s.image_id] for s in held_samples]] = probs
            seen = Counter(s.leaf for s in train_samples if s.image_id not in held)
            judged[[position[s.image_id] for s in held_samples]] = [
                seen.get(s.leaf, 0) >= min_class_photos for s in held_samples]
    assert not np.isnan(oof).any(), "some training photos got no out-of-fold prediction"

    labels = np.array([index[s.leaf] for s in train_samples])
    np.savez(out_dir / "oof_probs.npz", probs=oof, labels=labels, judged=judged,
             images=np.array([s.image_id for s in train_samples]), classes=np.array(classes))
    found = write_label_issues(train_samples, oof, labels, judged, taxonomy, out_dir, min_suggested_prob,
                               extra={"folds": folds, "fold_photos": fold_photos, "recipe": recipe.to_dict(),
                                      "seconds": time.time() - start})
    log.info("%d of %d training photos flagged (out-of-fold top-1 %.3f) in %.0f s",
             found.flagged, found.n, found.oof_top1, time.time() - start)
    return found


def write_label_issues(samples: list[Sample], oof: np.ndarray, labels: np.ndarray, judged: np.ndarray,
                       taxonomy: Taxonomy, out_dir: Path, min_suggested_prob: float = 0.5,
                       extra: dict | None = None) -> LabelIssues:
    """cleanlab on out-of-fold probabilities → ``label_issues.csv`` / ``.json`` / ``.png``.

    A photo is listed when confident learning flags it, its class was seen often enough by
    the fold model that judged it (``judged``: a rare class held by one sender is otherwise
    "never predicted", hence always flagged), and the network puts at least
    ``min_suggested_prob`` on another class: ambiguous photos (is it a polo or a T-shirt?)
    stay in training, confidently contradicted ones go."""
    import cleanlab

    classes = taxonomy.leaves
    flagged = cleanlab.filter.find_label_issues(labels, oof, return_indices_ranked_by="self_confidence")
    quality = cleanlab.rank.get_label_quality_scores(labels, oof)
    best = oof.argmax(1)
    listed = [int(i) for i in flagged if judged[i] and oof[i, best[i]] >= min_suggested_prob]
    csv_path = Path(out_dir) / "label_issues.csv"
    suggested = [taxonomy.nodes[classes[best[i]]].labels[0] for i in listed]  # in the dataset's words
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ISSUE_COLUMNS)
        for i, guess in zip(listed, suggested):
            s = samples[i]
            writer.writerow([s.image_id, s.sender, s.label, guess, f"{oof[i, labels[i]]:.4f}",
                             f"{oof[i, best[i]]:.4f}", f"{quality[i]:.4f}"])
    oof_top1 = float((best == labels).mean())
    _plot_examples([samples[i] for i in listed[:24]], suggested[:24], Path(out_dir) / "label_issues.png")
    summary = {"n": len(samples), "flagged_by_cleanlab": int(len(flagged)), "not_judged": int((~judged).sum()),
               "min_suggested_prob": min_suggested_prob, "flagged": len(listed), "oof_top1": oof_top1,
               "flagged_per_label": dict(Counter(samples[i].label for i in listed).most_common()),
               "flagged_pairs": dict(Counter(f"{samples[i].label} → {g}" for i, g in zip(listed, suggested)).most_common()),
               **(extra or {})}
    (Path(out_dir) / "label_issues.json").write_text(json.dumps(summary, indent=2) + "\n")
    return LabelIssues(csv_path, len(listed), len(samples), oof_top1)


def _plot_examples(samples: list[Sample], suggested: list[str], path: Path) -> None:
    """The worst-ranked flagged photos with given → suggested label, for a person to check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.trainer.evaluation.plots import save_figure

    from services.trainer.data.dataset import load_photo

    if not samples:
        return
    cols = 6
    rows = (len(samples) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, s, guess in zip(axes.ravel(), samples, suggested):
        img = load_photo(s.path)
        img.thumbnail((200, 200))
        ax.imshow(img)
        ax.set_title(f"{s.label} → {guess}", fontsize=8)
    fig.suptitle("Training photos flagged as mislabelled (given → network's guess)", fontsize=10)
    save_figure(fig, path, dpi=100)


def read_exclusions(path: Path) -> set[str]:
    """Image ids to leave out of training: a ``label_issues.csv`` (column ``image``) or a plain
    list with one id per line."""
    text = Path(path).read_text().splitlines()
    if text and text[0].split(",")[0] == "image":
        return {row["image"] for row in csv.DictReader(text)}
    return {line.strip() for line in text if line.strip() and not line.startswith("#")}
