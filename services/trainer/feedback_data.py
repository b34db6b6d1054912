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
from pathlib import Path

from services.trainer.feature_store import PhotoRef
from services.trainer.refit import FeedbackItem, LabelledPhoto
from shared.db import session_scope
from shared.feedback import current_feedback
from shared.storage import PhotoStore

__all__ = ["is_held_back", "split_by_person", "current_feedback_items"]


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
