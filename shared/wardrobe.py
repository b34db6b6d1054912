"""A person's wardrobe: their classifications with their current verdicts, and removing one.

**In the wardrobe** (``in_wardrobe``, the one definition; retention exempts what it selects from
every clock): a finished classification whose owner gave it a current verdict (confirmed or
corrected it), still owned (a garment removed with ``keep_for_training`` is not), by a key the owner
can still use (not revoked; a browser session's key not past its cookie's expiry). A verdict by
anyone else (an operator, a trainer) does not make a garment the owner's.

Removing a garment deletes its classification row and every verdict on it; its photo goes too
unless another classification or a kept verdict still names the same bytes (the photo store is
content-addressed: two identical uploads share one file). With ``keep_for_training`` the person
gives the photo to the training set instead: the classification is disowned (``owner_id`` NULL,
so no client sees it again, the person included) and the photo and verdicts stay for the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select
from sqlalchemy.orm import Session, aliased

from shared.auth import Caller
from shared.jobs import parse_job_id
from shared.tables import ApiKey, ClassificationJob, Feedback, JobStatus

__all__ = ["Garment", "garments", "remove", "UnknownGarment", "Removal", "owner_verdict", "in_wardrobe"]


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


def owner_verdict(verdict: type[Feedback] = Feedback) -> ColumnElement[bool]:
    """SQL: ``verdict`` (Feedback or an alias of it) is the current verdict of its classification's own
    owner. At most one row matches per classification (the partial unique index on current pairs)."""
    return and_(verdict.classification_id == ClassificationJob.id, verdict.caller_id == ClassificationJob.owner_id,
                verdict.is_current.is_(True))


def in_wardrobe(now: datetime) -> ColumnElement[bool]:
    """SQL: the classification is in its owner's wardrobe at ``now`` (the module's docstring). Correlates
    to ``ClassificationJob`` of the query it is used in; its own Feedback is an alias, so it also nests
    inside a query over Feedback."""
    verdict = aliased(Feedback, name="wardrobe_verdict")
    key_live = exists().where(ApiKey.id == ClassificationJob.owner_id, ApiKey.revoked_at.is_(None),
                              or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    return and_(ClassificationJob.status == JobStatus.done, ClassificationJob.owner_id.is_not(None),
                exists().where(owner_verdict(verdict)), key_live)


def garments(session: Session, owner_id: str, limit: int) -> list[Garment]:
    """The owner's classifications, newest first, each with the owner's current verdict."""
    rows = session.execute(select(ClassificationJob, Feedback).outerjoin(Feedback, owner_verdict())
                           .where(ClassificationJob.owner_id == owner_id)
                           .order_by(ClassificationJob.created_at.desc()).limit(limit)).all()
    return [Garment(job, verdict) for job, verdict in rows]


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
