"""``wardrobe find-label-issues`` on tiny generated data with deliberately wrong labels, and
training that leaves flagged photos out."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from services.trainer.research.label_issues import ISSUE_COLUMNS, find_label_issues, read_exclusions
from services.trainer.data.dataset import load_dataset, split_by_sender
from shared.recipe import Recipe
from services.trainer.pipelines.train import train
from shared.model_card import ModelCard
from tests.trainer.conftest import make_photo, write_dataset

pytestmark = pytest.mark.slow

RECIPE = Recipe(input_size=64, resize_size=72, views=6, epochs=6, batch_size=16, threads=1, lr=3e-3,
                rotation_degrees=10.0, crop_scale=(0.8, 1.0))
LABELS = ["T-Shirt", "Pants", "Shoes", "Hat"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """4 easy classes × 16 photos; 4 photos drawn as 'Pants' but labelled 'Hat'."""
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    root = tmp_path_factory.mktemp("noisy")
    flipped = [f"flip-{k}" for k in range(4)]
    rng = np.random.default_rng(7)
    (root / "data" / "images").mkdir(parents=True)
    for image_id in flipped:
        make_photo(1, rng).save(root / "data" / "images" / f"{image_id}.jpg", quality=90)
    # senders 0..11 hold the normal photos; the flipped ones belong to normal senders too
    data = write_dataset(root / "data", LABELS, per_label=16, senders=12, seed=3,
                         extra_rows=[(i, str(k), "Hat") for k, i in enumerate(flipped)])
    samples = load_dataset(data, taxonomy).samples
    split = split_by_sender(samples, fractions={"train": 0.6, "val": 0.15, "cal": 0.15, "test": 0.1})
    split_file = root / "split.json"
    split_file.write_text(json.dumps(split))
    found = find_label_issues(data, taxonomy, root / "issues", split_file, RECIPE, folds=2, min_class_photos=3)
    return taxonomy, data, split, split_file, flipped, found


def test_flags_are_training_photos_written_worst_first(noisy):
    taxonomy, data, split, _, flipped, found = noisy
    rows = list(csv.DictReader(found.csv_path.open()))
    assert rows and list(rows[0]) == ISSUE_COLUMNS
    assert found.flagged == len(rows)
    assert {r["image"] for r in rows} <= set(split["train"])  # never val/cal/test photos
    assert all(r["label"] != r["suggested"] for r in rows)
    oof = np.load(found.csv_path.parent / "oof_probs.npz")
    assert oof["probs"].shape == (len(split["train"]), len(taxonomy.leaves))
    assert np.allclose(oof["probs"].sum(1), 1.0, atol=1e-4)
    summary = json.loads((found.csv_path.parent / "label_issues.json").read_text())
    assert summary["flagged"] == found.flagged and summary["n"] == len(split["train"])
    # each fold model trained on the other folds only: never on test, val or cal photos
    assert sum(f["test"] for f in summary["fold_photos"]) == len(split["train"])
    for fold in summary["fold_photos"]:
        assert fold["train"] + fold["test"] == len(split["train"])
        assert (fold["val"], fold["cal"]) == (len(split["val"]), len(split["cal"]))


def test_deliberately_wrong_labels_are_found(noisy):
    """The out-of-fold network sees 'Pants'-looking photos labelled 'Hat': most get flagged,
    and it believes their labels less than almost any honest photo's."""
    _, _, split, _, flipped, found = noisy
    flagged = {r["image"] for r in csv.DictReader(found.csv_path.open())}
    in_train = [i for i in flipped if i in split["train"]]
    assert in_train, "the fixture should put some wrong labels into training"
    assert len(flagged & set(in_train)) >= max(1, len(in_train) // 2), (flagged, in_train)
    # and the network's belief in the given label is far lower for them than for honest photos
    oof = np.load(found.csv_path.parent / "oof_probs.npz")
    given = oof["probs"][np.arange(len(oof["labels"])), oof["labels"]]
    wrong = np.isin(oof["images"], in_train)
    assert np.median(given[wrong]) < np.percentile(given[~wrong], 25), (given[wrong], np.median(given[~wrong]))


def test_training_leaves_excluded_photos_out(noisy, tmp_path):
    taxonomy, data, split, split_file, _, found = noisy
    exclude = read_exclusions(found.csv_path) | {split["val"][0]}  # a val id must not be dropped
    result = train(data, tmp_path, taxonomy, Recipe(input_size=64, resize_size=72, views=1, epochs=1, threads=1),
                   split_file=split_file, version="clean", exclude=exclude)
    card = ModelCard.load(result.model_dir)
    assert card.data["excluded_train_photos"] == len(exclude & set(split["train"]))
    assert card.data["photos_per_split"]["train"] == len(split["train"]) - card.data["excluded_train_photos"]
    assert card.data["photos_per_split"]["val"] == len(split["val"])


def test_exclusion_file_formats(tmp_path):
    plain = tmp_path / "ids.txt"
    plain.write_text("# flagged by hand\na\n\nb\n")
    assert read_exclusions(plain) == {"a", "b"}
    table = tmp_path / "issues.csv"
    table.write_text(",".join(ISSUE_COLUMNS) + "\nx,1,Hat,Pants,0.1,0.8,0.1\n")
    assert read_exclusions(table) == {"x"}


def test_unjudged_and_merely_ambiguous_photos_stay_in_training(tmp_path):
    """From given out-of-fold probabilities: a confident contradiction is listed; the same
    contradiction on a photo whose class its fold model never saw is not; and a stricter
    ``min_suggested_prob`` keeps a contradiction that is not confident enough."""
    from services.trainer.research.label_issues import write_label_issues
    from services.trainer.data.dataset import Sample
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    k = len(taxonomy.leaves)
    labels = np.repeat(np.arange(4), 30)
    oof = np.full((len(labels), k), 0.02 / (k - 1), dtype=np.float64)
    oof[np.arange(len(labels)), labels] = 0.98
    for i, other in ((0, 1), (2, 3)):  # photos 0 and 2: the network is sure they are another class
        oof[i] = 0.001 / (k - 2)
        oof[i, other], oof[i, labels[i]] = 0.99, 0.009
    oof /= oof.sum(1, keepdims=True)
    judged = np.ones(len(labels), dtype=bool)
    judged[2] = False
    samples = [Sample(f"p{i}", tmp_path / f"p{i}.jpg", "s", taxonomy.nodes[taxonomy.leaves[y]].labels[0],
                      taxonomy.leaves[y]) for i, y in enumerate(labels)]
    for s, y in zip(samples, labels):  # listed photos are drawn into label_issues.png
        make_photo(int(y), np.random.default_rng(0)).save(s.path)

    found = write_label_issues(samples, oof, labels, judged, taxonomy, tmp_path, min_suggested_prob=0.5)
    rows = list(csv.DictReader(found.csv_path.open()))
    assert [r["image"] for r in rows] == ["p0"]
    assert rows[0]["suggested"] == taxonomy.nodes[taxonomy.leaves[1]].labels[0]  # in the dataset's words
    summary = json.loads((tmp_path / "label_issues.json").read_text())
    assert summary["flagged_by_cleanlab"] >= 2 and summary["not_judged"] == 1 and summary["flagged"] == 1

    strict = write_label_issues(samples, oof, labels, judged, taxonomy, tmp_path, min_suggested_prob=0.995)
    assert strict.flagged == 0
