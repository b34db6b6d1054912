"""Feedback as the learning code sees it: current verdicts → labelled photos, split by person.

Held back *by person*, never by photo: one person's photos share a floor, a light and a camera,
so a photo held back from someone whose other photos trained the candidate would flatter it, and
a calibration checked on photos of people it was fitted on would not say whether the promise
holds for the next person. Whether a person is held back depends only on a hash of their id, so
the same people stay held back in every job: a later retrain never trains on the people an
earlier gate judged with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.trainer.data.dataset import PhotoRef, load_dataset, load_or_create_split
from services.trainer.errors import RefitError
from shared.db import session_scope
from shared.feedback import current_feedback
from shared.storage import PhotoStore
from shared.taxonomy import Taxonomy

__all__ = ["LabelledPhoto", "FeedbackItem", "feedback_label", "feedback_photos", "dataset_parts", "is_held_back", "split_by_person", "current_feedback_items"]


@dataclass(frozen=True)
class LabelledPhoto:
    """A photo with the node it shows and the person it comes from (sender or feedback caller)."""

    photo: PhotoRef
    leaf: str  # a leaf; from ``feedback_photos(partial=True)`` possibly an inner node (a partial label)
    person: str
    source: str = "dataset"  # "dataset" | "feedback"
    kids: bool | None = None  # children's clothes (the dataset's ``kids`` column; None for feedback)


@dataclass(frozen=True)
class FeedbackItem:
    """One current verdict, as the learning code needs it (the runner builds these from rows)."""

    photo: PhotoRef
    person: str  # who gave the verdict: feedback is held back by person
    answer_node: str  # what the classification answered
    correct: bool  # True: the answer was right
    node: str | None = None  # the true node per the caller ("at least this"); the answer's if unset


def feedback_label(item: FeedbackItem, taxonomy: Taxonomy) -> str | None:
    """The leaf a verdict teaches, or None when it only says "somewhere under an inner node"."""
    node = item.node or (item.answer_node if item.correct else None)
    if node is None or node not in taxonomy.nodes:
        raise RefitError(f"feedback names node {node!r}, which is not in taxonomy {taxonomy.version}")
    return node if taxonomy.nodes[node].is_leaf else None


def feedback_photos(items: Sequence[FeedbackItem], taxonomy: Taxonomy,
                    partial: bool = False) -> tuple[list[LabelledPhoto], int]:
    """Labelled feedback photos (one per photo: the last verdict wins) and the number of verdicts
    skipped because they name an inner node. ``partial``: keep those too, labelled with the inner
    node (a "Yes" to a hedged answer: the truth is one of its leaves), for the partial-label loss
    and the gate; nothing is skipped then."""
    by_photo: dict[str, LabelledPhoto] = {}
    skipped = 0
    for item in items:
        leaf = feedback_label(item, taxonomy)
        if leaf is None and partial:
            leaf = item.node or item.answer_node
        if leaf is None:
            skipped += 1
            continue
        by_photo[item.photo.sha256] = LabelledPhoto(item.photo, leaf, item.person, "feedback")
    return list(by_photo.values()), skipped


def dataset_parts(data_dir: Path, taxonomy: Taxonomy, split_file: Path) -> dict[str, list[LabelledPhoto]]:
    """The dataset's labelled photos per split (train/val/cal/test), split by sender as stored.

    Images are not re-verified here (the feature store decodes each one once and caches it)."""
    dataset = load_dataset(data_dir, taxonomy, on_error="skip", verify_images=False)
    split = load_or_create_split(dataset.samples, Path(split_file))
    by_id = {s.image_id: s for s in dataset.classified}
    return {name: [LabelledPhoto(PhotoRef.of(by_id[i].path), by_id[i].leaf, by_id[i].sender, kids=by_id[i].kids)
                   for i in ids if i in by_id] for name, ids in split.items()}


def is_held_back(person: str, share: float, salt: str = "feedback-holdout") -> bool:
    """Deterministic: the person's hash, read as a number in [0, 1), is below ``share``."""
    digest = hashlib.sha256(f"{salt}:{person}".encode()).hexdigest()
    return int(digest[:13], 16) / 16 ** 13 < share


def split_by_person(photos: Sequence[LabelledPhoto], share: float) -> tuple[list[LabelledPhoto], list[LabelledPhoto]]:
    """(photos to learn from, photos of held-back people)."""
    learn, held = [], []
    for p in photos:
        (held if is_held_back(p.person, share) else learn).append(p)
    return learn, held


def current_feedback_items(database_url: str, photo_dir: Path) -> list[FeedbackItem]:
    """Every current verdict (one per classification and caller) whose photo is still stored,
    oldest first (so a person's later verdict on the same photo wins)."""
    photos = PhotoStore(photo_dir)
    with session_scope(database_url) as session:
        rows = [(r.caller_id, r.photo_key, r.answer, r.correct, r.node) for r in current_feedback(session)]
    items = []
    for caller, key, answer, correct, node in rows:
        path = photos.path(key)
        if path.is_file():
            items.append(FeedbackItem(PhotoRef(path, key), caller, answer, bool(correct), node))
    return items
