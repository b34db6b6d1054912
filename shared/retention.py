"""What Wardrobe keeps, for how long, and deleting one person's data.

Three clocks, each a setting of the sweeper (``RETENTION_*_DAYS``; 0 = keep forever), counted from
when the row was created:

* **photos** (30 days): the photo of a finished classification is deleted; the row (answer,
  probabilities, timings) stays until its own time. Photos are the most personal thing stored and
  nothing in serving needs them once a job is done (a re-hedge uses the stored probabilities).
* **classifications** (90 days): a finished classification row goes, with its photo if still there.
* **feedback** (365 days): a verdict, the photo it judged and the classification it judged are what
  the trainer learns from (services/trainer/feedback_data.py reads current verdicts whose photo is
  still stored), so a classification with feedback keeps its row *and* photo until its last verdict
  expires; then both go at once.

A classification whose ``keep`` is true (a person asked to keep it) is never expired, nor its photo
and feedback. A garment in its owner's wardrobe (``shared.wardrobe.in_wardrobe``: finished, confirmed
or corrected by the owner, not removed, the owner's key still usable) is not expired either while it
stays there, nor its photo and the owner's current verdict on it (``keep_wardrobe``, the sweeper's
``RETENTION_KEEP_WARDROBE``, on by default): a digital wardrobe lasts as long as its owner keeps it.
Everything else about such a garment keeps its clock: verdicts by others (a trainer's, an operator's)
and the owner's superseded ones go after ``feedback_days`` as usual. Once it leaves the wardrobe
(removed with ``keep_for_training``, the key revoked, a browser session's cookie expired) the clocks
apply again, counted from when each row was made, so what is past them goes on the next pass.
Unfinished jobs are never touched (the sweeper still owes them work).

Photos are content-addressed (``shared.storage``): one file may serve several rows, of one person or
of several who sent the same bytes. A file is deleted only when no row still needs it: no job whose
photo was not purged, no feedback. A file stored (or stored again) within ``PHOTO_GRACE_S`` of ``now``
is left for the next run: the upload of the same bytes may be a moment from committing its row.

``delete_client_data`` deletes everything of one API key (one person or app): its classifications,
the feedback on them, the feedback it gave, and every photo no other row needs. Everything here takes
the time as an argument (``now``), so tests move the clock instead of waiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.storage import PhotoStore
from shared.tables import ClassificationJob, Feedback, JobStatus
from shared.wardrobe import in_wardrobe, owner_verdict

__all__ = ["RetentionPolicy", "expire", "delete_client_data", "PHOTO_GRACE_S"]

log = logging.getLogger(__name__)

PHOTO_GRACE_S = 3600.0
FINISHED = (JobStatus.done, JobStatus.failed)


@dataclass(frozen=True)
class RetentionPolicy:
    photos_days: float = 30.0
    classifications_days: float = 90.0
    feedback_days: float = 365.0
    keep_wardrobe: bool = True  # a garment in its owner's wardrobe is exempt from every clock (the docstring)
    batch: int = 1000  # rows per statement: a long backlog drains over several runs, in short transactions

    def cutoff(self, days: float, now: datetime) -> datetime | None:
        return None if not days else now - timedelta(days=days)


def _exempt(policy: RetentionPolicy, now: datetime) -> ColumnElement[bool]:
    """SQL on ClassificationJob: never expired now (kept by wish, or in its owner's wardrobe). In the row
    and photo passes a wardrobe garment is also excluded by its verdict (``_has_feedback``); it is said
    here anyway, so the exemption does not hang on the order of the passes."""
    kept = ClassificationJob.keep.is_(True)
    return or_(kept, in_wardrobe(now)) if policy.keep_wardrobe else kept


def _exempt_feedback(policy: RetentionPolicy, now: datetime) -> ColumnElement[bool]:
    """SQL on Feedback: never expired now. Every verdict on a kept classification; of a wardrobe
    garment only what the wardrobe shows, the owner's current verdict."""
    kept = ClassificationJob.keep.is_(True)
    if policy.keep_wardrobe:
        kept = or_(kept, owner_verdict(Feedback) & in_wardrobe(now))
    return exists().where(ClassificationJob.id == Feedback.classification_id, kept)


def _has_feedback():  # noqa: ANN202
    return exists().where(Feedback.classification_id == ClassificationJob.id)


def expire(database_url: str, store: PhotoStore, policy: RetentionPolicy, now: datetime) -> dict[str, int]:
    """One retention pass at time ``now``; returns what went (rows and photo files)."""
    counts = {"feedback": 0, "classifications": 0, "photos_purged": 0, "photo_files": 0}
    candidates: set[str] = set()
    with session_scope(database_url) as session:
        if (cut := policy.cutoff(policy.feedback_days, now)) is not None:
            rows = session.execute(select(Feedback.id, Feedback.photo_key).where(
                Feedback.created_at < cut, ~_exempt_feedback(policy, now)).limit(policy.batch)).all()
            if rows:
                session.execute(delete(Feedback).where(Feedback.id.in_([r.id for r in rows])))
            candidates.update(r.photo_key for r in rows)
            counts["feedback"] = len(rows)
        if (cut := policy.cutoff(policy.classifications_days, now)) is not None:
            rows = session.execute(select(ClassificationJob.id, ClassificationJob.photo_key).where(
                ClassificationJob.created_at < cut, ClassificationJob.status.in_(FINISHED),
                ~_exempt(policy, now), ~_has_feedback()).limit(policy.batch)).all()
            if rows:
                session.execute(delete(ClassificationJob).where(ClassificationJob.id.in_([r.id for r in rows]))
                                .execution_options(synchronize_session=False))
            candidates.update(r.photo_key for r in rows)
            counts["classifications"] = len(rows)
        if (cut := policy.cutoff(policy.photos_days, now)) is not None:
            rows = session.execute(select(ClassificationJob.id, ClassificationJob.photo_key).where(
                ClassificationJob.created_at < cut, ClassificationJob.status.in_(FINISHED), ~_exempt(policy, now),
                ClassificationJob.photo_purged_at.is_(None), ~_has_feedback()).limit(policy.batch)).all()
            if rows:
                # a plain UPDATE, not the ORM's versioned one: the row's result does not change
                session.execute(update(ClassificationJob).where(ClassificationJob.id.in_([r.id for r in rows]))
                                .values(photo_purged_at=now).execution_options(synchronize_session=False))
            candidates.update(r.photo_key for r in rows)
            counts["photos_purged"] = len(rows)
    counts["photo_files"] = _delete_unneeded_photos(database_url, store, candidates, now)
    return counts


def delete_client_data(database_url: str, store: PhotoStore, key_id: str) -> dict[str, int]:
    """Every classification of API key ``key_id``, all feedback on them (whoever gave it), all feedback
    it gave, and each of their photos that no other row needs. Returns the counts."""
    with session_scope(database_url) as session:
        jobs = session.execute(select(ClassificationJob.id, ClassificationJob.photo_key)
                               .where(ClassificationJob.owner_id == key_id)).all()
        job_ids = [j.id for j in jobs]
        fb = session.execute(select(Feedback.id, Feedback.photo_key).where(
            or_(Feedback.caller_id == key_id, Feedback.classification_id.in_(job_ids)))).all()
        for chunk in _chunks([f.id for f in fb]):
            session.execute(delete(Feedback).where(Feedback.id.in_(chunk)))
        for chunk in _chunks(job_ids):
            session.execute(delete(ClassificationJob).where(ClassificationJob.id.in_(chunk))
                            .execution_options(synchronize_session=False))
    keys = {j.photo_key for j in jobs} | {f.photo_key for f in fb}
    files = _delete_unneeded_photos(database_url, store, keys, now=None)
    log.warning("deleted the data of key %s: %d classifications, %d feedback, %d photo files",
                key_id, len(jobs), len(fb), files)
    return {"classifications": len(jobs), "feedback": len(fb), "photo_files": files}


def _chunks(items: list, size: int = 500) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _needed(session: Session, keys: list[str]) -> set[str]:
    """Of ``keys``, those a row still needs: a job whose photo was not purged, or any feedback."""
    needed = set(session.scalars(select(ClassificationJob.photo_key).where(
        ClassificationJob.photo_key.in_(keys), ClassificationJob.photo_purged_at.is_(None))))
    needed |= set(session.scalars(select(Feedback.photo_key).where(Feedback.photo_key.in_(keys))))
    return needed


def _delete_unneeded_photos(database_url: str, store: PhotoStore, keys: set[str], now: datetime | None) -> int:
    """Delete the files of ``keys`` no row needs. During a retention pass (``now`` given) a file stored
    again in the last PHOTO_GRACE_S stays for the next pass; a person's deletion takes it at once
    unless a row needs it."""
    deleted = 0
    untouched_since = None if now is None else now.timestamp() - PHOTO_GRACE_S
    for chunk in _chunks(sorted(keys)):
        with session_scope(database_url) as session:
            needed = _needed(session, chunk)
        for key in chunk:
            if key not in needed and store.delete(key, untouched_since=untouched_since):
                deleted += 1
    return deleted

