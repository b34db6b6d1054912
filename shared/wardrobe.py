"""A person's wardrobe: their classifications with their current verdicts, and removing one.

Removing a garment deletes its classification row and every verdict on it; its photo goes too
unless another classification or a kept verdict still names the same bytes (the photo store is
content-addressed: two identical uploads share one file). With ``keep_for_training`` the person
gives the photo to the training set instead: the classification is disowned (``owner_id`` NULL,
so no client sees it again, the person included) and the photo and verdicts stay for the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.auth import Caller
from shared.jobs import parse_job_id
from shared.tables import ClassificationJob, Feedback

__all__ = ["Garment", "garments", "remove", "UnknownGarment", "Removal"]


class UnknownGarment(LookupError):
    """No such classification, or not the caller's."""


@dataclass(frozen=True)
class Garment:
    job: ClassificationJob
    verdict: Feedback | None  # the owner's current feedback on it


@dataclass(frozen=True)
class Removal:
    kept_for_training: bool
    photo_key_to_delete: str | None  # the caller deletes the file after the commit


def garments(session: Session, owner_id: str, limit: int) -> list[Garment]:
    """The owner's classifications, newest first, each with the owner's current verdict."""
    jobs = list(session.scalars(select(ClassificationJob).where(ClassificationJob.owner_id == owner_id)
                                .order_by(ClassificationJob.created_at.desc()).limit(limit)))
    verdicts = {}
    if jobs:
        rows = session.scalars(select(Feedback).where(Feedback.classification_id.in_([j.id for j in jobs]),
                                                      Feedback.caller_id == owner_id, Feedback.is_current.is_(True)))
        verdicts = {row.classification_id: row for row in rows}
    return [Garment(job, verdicts.get(job.id)) for job in jobs]


def owned_job(session: Session, job_id: str, caller: Caller, *, lock: bool = False) -> ClassificationJob:
    key = parse_job_id(job_id)
    job = None
    if key is not None:
        query = select(ClassificationJob).where(ClassificationJob.id == key)
        job = session.scalars(query.with_for_update() if lock else query).first()
    if job is None or not caller.owns(job.owner_id):  # another's is as absent as none
        raise UnknownGarment(f"no classification with id {job_id!r}")
    return job


def remove(session: Session, job_id: str, caller: Caller, keep_for_training: bool) -> Removal:
    """Take a garment out of the caller's wardrobe (see the module's docstring)."""
    job = owned_job(session, job_id, caller, lock=True)
    if keep_for_training:
        job.owner_id = None
        session.flush()
        return Removal(True, None)
    photo_key = job.photo_key
    session.execute(delete(Feedback).where(Feedback.classification_id == job.id))
    session.delete(job)
    session.flush()
    still_used = (session.scalar(select(ClassificationJob.id).where(ClassificationJob.photo_key == photo_key).limit(1))
                  or session.scalar(select(Feedback.id).where(Feedback.photo_key == photo_key).limit(1)))
    return Removal(False, None if still_used else photo_key)
