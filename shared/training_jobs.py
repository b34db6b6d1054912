"""State transitions of a training job; the row is the source of truth.

queued → running → done | failed | cancelled (a queued job may also go straight to cancelled).
Every function re-reads the row, so a task delivered twice, a cancel racing the worker, or a
sweep after a crash each find the job's real state. ``running_slot`` (unique, True or NULL) makes
"one job runs at a time" a database constraint, whatever the number of trainer workers; a worker
that dies stops beating, and :func:`fail_stale` turns its job into ``failed`` with the reason.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.tables import TrainingJob, TrainingJobStatus, utcnow

__all__ = ["create", "get", "list_jobs", "claim", "SlotBusy", "JobFinished", "beat", "finish", "fail",
           "mark_cancelled", "request_cancel", "fail_stale", "running_job", "eta_seconds", "aware", "LOG_TAIL_LINES"]

LOG_TAIL_LINES = 50
S = TrainingJobStatus


class SlotBusy(RuntimeError):
    """Another training job is running; this one stays queued."""


class JobFinished(RuntimeError):
    """The job has finished (done, failed or cancelled): it cannot be cancelled any more."""


def aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t  # SQLite: naive UTC


def _id(job_id: str | uuid.UUID) -> uuid.UUID | None:
    try:
        return job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        return None


def create(session: Session, mode: str, options: dict[str, Any], requested_by: str | None) -> TrainingJob:
    job = TrainingJob(id=uuid.uuid4(), mode=mode, options=options, status=S.queued, requested_by=requested_by,
                      progress=0.0, log_tail=[], metrics={}, cancel_requested=False, stage="queued")
    session.add(job)
    session.flush()
    return job


def get(session: Session, job_id: str | uuid.UUID, *, lock: bool = False) -> TrainingJob | None:
    key = _id(job_id)
    if key is None:
        return None
    if lock:  # re-read under a row lock (PostgreSQL; SQLite serialises writers anyway)
        return session.scalars(select(TrainingJob).where(TrainingJob.id == key).with_for_update()
                               .execution_options(populate_existing=True)).first()
    return session.get(TrainingJob, key, populate_existing=True)


def list_jobs(session: Session, limit: int = 50, status: str | None = None,
              requested_by: str | None = None) -> list[TrainingJob]:
    """Newest first; ``requested_by``: only that requester's jobs (None: everyone's)."""
    query = select(TrainingJob).order_by(TrainingJob.created_at.desc()).limit(limit)
    if status:
        query = query.where(TrainingJob.status == S(status))
    if requested_by is not None:
        query = query.where(TrainingJob.requested_by == requested_by)
    return list(session.scalars(query))


def running_job(session: Session) -> TrainingJob | None:
    return session.scalars(select(TrainingJob).where(TrainingJob.running_slot.is_(True))).first()


def claim(session: Session, job_id: str | uuid.UUID, worker: str) -> TrainingJob | None:
    """The job, now ``running`` on ``worker``, if it is queued; None if it is anything else (finished,
    cancelled while queued, or already claimed: a redelivered message). Raises :class:`SlotBusy`
    while another job holds the running slot."""
    job = get(session, job_id, lock=True)
    if job is None or job.status is not S.queued:
        return None
    now = utcnow()
    try:
        with session.begin_nested():
            job.status, job.running_slot, job.worker = S.running, True, worker
            job.started_at = job.heartbeat_at = now
            job.stage = "starting"
            session.flush()
    except IntegrityError:
        session.expire(job)
        raise SlotBusy(f"training job {running_job(session).id if running_job(session) else '?'} "
                       "is running") from None
    return job


def beat(session: Session, job_id: str | uuid.UUID, *, stage: str | None = None, progress: float | None = None,
         log_tail: list[str] | None = None) -> bool:
    """Record liveness (and progress, if given) of a running job; returns whether a cancel was asked.
    A job that is no longer running (swept as dead, say) is left alone: returns True so the worker
    stops."""
    values: dict[str, Any] = {"heartbeat_at": utcnow(), "updated_at": utcnow()}
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        values["progress"] = min(1.0, max(0.0, float(progress)))
    if log_tail is not None:
        values["log_tail"] = log_tail[-LOG_TAIL_LINES:]
    key = _id(job_id)
    result = session.execute(update(TrainingJob).where(TrainingJob.id == key, TrainingJob.status == S.running)
                             .values(**values))
    if result.rowcount == 0:
        return True
    return bool(session.scalar(select(TrainingJob.cancel_requested).where(TrainingJob.id == key)))


def _end(job: TrainingJob, status: TrainingJobStatus) -> None:
    job.status, job.running_slot, job.finished_at = status, None, utcnow()


def finish(session: Session, job_id: str | uuid.UUID, *, metrics: dict[str, Any], candidate_version: str | None,
           gate: dict[str, Any] | None, log_tail: list[str] | None = None) -> TrainingJob | None:
    job = get(session, job_id, lock=True)
    if job is None or job.status is not S.running:
        return job
    job.metrics, job.candidate_version, job.gate = metrics, candidate_version, gate
    job.progress, job.stage = 1.0, "done"
    if log_tail is not None:
        job.log_tail = log_tail[-LOG_TAIL_LINES:]
    _end(job, S.done)
    session.flush()
    return job


def fail(session: Session, job_id: str | uuid.UUID, code: str, message: str,
         log_tail: list[str] | None = None) -> TrainingJob | None:
    """Fail the job with a readable reason; a finished job is left as it is."""
    job = get(session, job_id, lock=True)
    if job is None or job.status.finished:
        return job
    job.error_code, job.error = code, message
    if log_tail is not None:
        job.log_tail = log_tail[-LOG_TAIL_LINES:]
    _end(job, S.failed)
    session.flush()
    return job


def mark_cancelled(session: Session, job_id: str | uuid.UUID, log_tail: list[str] | None = None
                   ) -> TrainingJob | None:
    """The worker saw the cancel request and stopped."""
    job = get(session, job_id, lock=True)
    if job is None or job.status.finished:
        return job
    job.stage = "cancelled"
    if log_tail is not None:
        job.log_tail = log_tail[-LOG_TAIL_LINES:]
    _end(job, S.cancelled)
    session.flush()
    return job


def request_cancel(session: Session, job_id: str | uuid.UUID) -> TrainingJob | None:
    """A queued job is cancelled at once (its message, when it arrives, finds it cancelled); a
    running one is asked to stop and stops at its next check. Raises :class:`JobFinished`."""
    job = get(session, job_id, lock=True)
    if job is None:
        return None
    if job.status.finished:
        raise JobFinished(f"training job {job.id} has already finished ({job.status.value}); "
                          "only a queued or running job can be cancelled")
    job.cancel_requested = True
    if job.status is S.queued:
        job.stage = "cancelled"
        _end(job, S.cancelled)
    session.flush()
    return job


def fail_stale(session: Session, timeout_s: float, *, dead_worker: str | None = None) -> list[TrainingJob]:
    """Fail running jobs whose worker stopped beating more than ``timeout_s`` ago, or that ran on
    ``dead_worker`` (a worker starting under its old name: its previous life is over)."""
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    query = select(TrainingJob).where(TrainingJob.status == S.running)
    stale_if = [TrainingJob.heartbeat_at < cutoff, TrainingJob.heartbeat_at.is_(None)]
    if dead_worker:
        stale_if.append(TrainingJob.worker == dead_worker)
    failed = []
    for job in session.scalars(query.where(or_(*stale_if)).with_for_update()):
        last = aware(job.heartbeat_at)
        if job.worker == dead_worker:
            reason = f"the trainer worker {job.worker} died while running this job (it has restarted)"
        else:
            reason = (f"the trainer worker {job.worker} stopped responding: no heartbeat since "
                      f"{last.isoformat() if last else 'the start'} (timeout {timeout_s:g} s)")
        job.error_code, job.error = "trainer_died", reason
        _end(job, S.failed)
        failed.append(job)
    session.flush()
    return failed


def eta_seconds(job: TrainingJob, now: datetime | None = None) -> float | None:
    """Remaining seconds, extrapolated from the progress so far (None before any progress)."""
    started = aware(job.started_at)
    if job.status is not S.running or started is None or not job.progress or job.progress <= 0:
        return None
    elapsed = ((now or utcnow()) - started).total_seconds()
    return round(elapsed * (1.0 - job.progress) / job.progress, 1)
