"""State transitions of a classification job; the row is the source of truth.

pending → running → done | failed. Every function re-reads the row, so a task delivered twice
(late acknowledgement after a crash) finds the job's real state and skips what is done; and every
update is a compare-and-set on the row's ``version_id`` (see ``shared.tables``), so of two
deliveries racing, only the first write lands.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.tables import ClassificationJob, JobStatus, utcnow

__all__ = ["parse_job_id", "create_job", "get_job", "claim_for_inference", "record_inference", "mark_done",
           "mark_failed", "count_by_status", "ms_between", "owed_stage", "unfinished_before", "mark_redispatched"]


def parse_job_id(job_id: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        return None


def ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    if start.tzinfo is None:  # SQLite returns naive datetimes; we only ever store UTC
        start = start.replace(tzinfo=timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return round((end - start).total_seconds() * 1000.0, 3)


def create_job(session: Session, photo_key: str, accuracy: float, owner_id: str | None = None) -> ClassificationJob:
    job = ClassificationJob(
        id=uuid.uuid4(), status=JobStatus.pending, photo_key=photo_key, accuracy_target=accuracy, timings={},
        owner_id=owner_id,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str | uuid.UUID) -> ClassificationJob | None:
    key = parse_job_id(job_id)
    return session.get(ClassificationJob, key) if key else None


def claim_for_inference(session: Session, job_id: str) -> ClassificationJob | None:
    """The job, now 'running', if it still needs inference; None if finished, inferred or unknown."""
    job = get_job(session, job_id)
    if job is None or job.status.finished or job.leaf_probs is not None:
        return None
    if job.status is JobStatus.pending:
        now = utcnow()
        job.status, job.started_at = JobStatus.running, now
        job.timings = {**job.timings, "queue_wait_ms": ms_between(job.created_at, now)}
    return job


def record_inference(
    session: Session, job: ClassificationJob, model_version: str, leaf_probs: list[float],
    timings: dict[str, Any],
) -> None:
    job.model_version, job.leaf_probs = model_version, leaf_probs
    job.timings = {**job.timings, **timings}
    session.flush()


def mark_done(session: Session, job: ClassificationJob, result: dict[str, Any], timings: dict[str, Any]) -> None:
    now = utcnow()
    job.status, job.result, job.finished_at = JobStatus.done, result, now
    job.timings = {**job.timings, **timings, "total_ms": ms_between(job.created_at, now)}
    session.flush()


def mark_failed(session: Session, job_id: str | uuid.UUID, code: str, message: str) -> ClassificationJob | None:
    """Fail the job with a readable error; a finished job is left as it is."""
    job = get_job(session, job_id)
    if job is None or job.status.finished:
        return job
    now = utcnow()
    job.status, job.error_code, job.error, job.finished_at = JobStatus.failed, code, message, now
    job.timings = {**job.timings, "total_ms": ms_between(job.created_at, now)}
    session.flush()
    return job


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(ClassificationJob.status, func.count()).group_by(ClassificationJob.status))
    return {status.value: n for status, n in rows}


def owed_stage(job: ClassificationJob) -> str:
    """The queue whose task the unfinished ``job`` waits for: hedging once its probabilities are
    stored, inference before."""
    return "hedger" if job.status is JobStatus.running and job.leaf_probs is not None else "inference"


def unfinished_before(session: Session, before: datetime, limit: int) -> list[ClassificationJob]:
    """Pending or running jobs last changed before ``before``, oldest first."""
    rows = session.scalars(
        select(ClassificationJob)
        .where(ClassificationJob.status.in_((JobStatus.pending, JobStatus.running)),
               ClassificationJob.updated_at < before)
        .order_by(ClassificationJob.updated_at)
        .limit(limit)
    )
    return list(rows)


def mark_redispatched(session: Session, job: ClassificationJob) -> None:
    """Count one more send to the workers (the caller sends it after this flush succeeds)."""
    job.attempts = (job.attempts or 1) + 1
    job.updated_at = utcnow()
    session.flush()
