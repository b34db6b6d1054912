"""Celery wiring of the trainer: ``trainer.run_job`` runs a ``training_jobs`` row to its end.

The broker is not trusted (SECURITY.md): anyone who can write to Redis can send a task. So the
only training task carries nothing but a job id, and runs only a row that exists and names who
asked for it, whose key (if it is one) is still valid with a role that may retrain. Rows are
written by the gateway after authentication, or by the CLI and beat, which hold the database
credentials; a message cannot create one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

from services.trainer.config import TrainerSettings, get_settings
from shared import feedback, training_jobs
from shared.celery_app import AUTO_RETRAIN, RUN_JOB, TRAINING_SWEEP
from shared.db import session_scope
from shared.schemas import TrainingJobTaskIn
from shared.tables import utcnow

log = logging.getLogger(__name__)


def refusal(job_id: str) -> str | None:
    """Why the training job must not run (None: it may). Refused jobs that have a row are failed."""
    from shared import api_keys
    from shared.auth import Role, operator_only_options

    with session_scope(get_settings().resolved_database_url) as session:
        job = training_jobs.get(session, job_id)
        if job is None:
            return f"no training job {job_id!r} exists: the message did not come from an authorised request"
        if not job.requested_by:
            return "the training job names no requester"
        key = api_keys.get_key(session, job.requested_by)
        if key is not None and (key.revoked_at is not None or not key.role.allows(Role.trainer)):
            return f"the requester's key {key.id} is revoked or may not retrain"
        if key is not None and (why := operator_only_options(job.options or {}, key.role)):
            return f"the requester's key {key.id} may not ask for {why}"
    return None


# --- training jobs (rows in training_jobs; services.trainer.jobs.runner) -------------------------
@shared_task(name=RUN_JOB, bind=True, max_retries=None)
def run_job_task(self, payload: dict) -> None:  # noqa: ANN001 - Celery task
    """Runs the job, or waits (a retry, not a blocked worker) while another job holds the slot."""
    from services.trainer.jobs.runner import run_training_job

    request = TrainingJobTaskIn.model_validate(payload)
    if reason := refusal(request.job_id):
        log.warning("refusing trainer.run_job for job %s: %s", request.job_id, reason)
        with session_scope(get_settings().resolved_database_url) as session:
            training_jobs.fail(session, request.job_id, "unauthorised", reason)
        return
    try:
        run_training_job(request.job_id, worker=self.request.hostname or "trainer")
    except training_jobs.SlotBusy as exc:
        log.info("training job %s waits: %s", request.job_id, exc)
        raise self.retry(countdown=get_settings().slot_retry_s) from None


@shared_task(name=TRAINING_SWEEP)
def sweep_task() -> int:
    """Fail running jobs whose worker stopped beating (Celery beat runs this)."""
    return len(sweep())


def sweep(dead_worker: str | None = None) -> list[str]:
    settings = get_settings()
    with session_scope(settings.resolved_database_url) as session:
        failed = training_jobs.fail_stale(session, settings.training_heartbeat_timeout_s, dead_worker=dead_worker)
        ids = [str(job.id) for job in failed]
    for job_id in ids:
        log.warning("training job %s failed: its trainer worker died", job_id)
    return ids


# --- the automatic trigger (beat; off unless AUTO_RETRAIN_AFTER_FEEDBACK or AUTO_RETRAIN_EVERY_S) -------
AUTO_REQUESTER = "auto"  # requested_by of jobs the trigger creates (not an API key: no key to revoke)


@shared_task(name=AUTO_RETRAIN)
def auto_retrain_task() -> str | None:
    from celery import current_app

    return auto_retrain(lambda job_id: current_app.send_task(RUN_JOB, args=[TrainingJobTaskIn(job_id=job_id)
                                                                             .model_dump()]))


def auto_retrain(enqueue, settings: TrainerSettings | None = None, now: datetime | None = None) -> str | None:  # noqa: ANN001
    """Create (and enqueue, after the commit) a job when one is due: ``AUTO_RETRAIN_AFTER_FEEDBACK``
    feedback items arrived since the last job was created, or ``AUTO_RETRAIN_EVERY_S`` passed since
    then. Never while a job is queued or running. Returns the new job's id, or None."""
    settings = settings or get_settings()
    after_n, every_s = settings.auto_retrain_after_feedback, settings.auto_retrain_every_s
    if not after_n and not every_s:
        return None
    now = now or utcnow()
    with session_scope(settings.resolved_database_url) as session:
        if training_jobs.list_jobs(session, 1, "queued") or training_jobs.running_job(session) is not None:
            return None
        last = training_jobs.list_jobs(session, 1)
        since = last[0].created_at if last else None
        new_items = feedback.count_since(session, since)
        reasons = []
        if after_n and new_items >= after_n:
            reasons.append(f"{new_items} feedback items since the last job (threshold {after_n})")
        if every_s and (since is None or (now - training_jobs.aware(since)).total_seconds() >= every_s):
            reasons.append(f"schedule: every {every_s:g} s")
        if not reasons:
            return None
        job = training_jobs.create(session, settings.auto_retrain_mode, {}, AUTO_REQUESTER)
        job.log_tail = [f"created by the automatic trigger: {'; '.join(reasons)}"]
        job_id = str(job.id)
    log.info("automatic trigger: training job %s (%s): %s", job_id, settings.auto_retrain_mode, "; ".join(reasons))
    enqueue(job_id)
    return job_id
