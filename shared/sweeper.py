"""The database row is the truth, and the sweeper enforces it: after any crash (a killed worker, a
Redis that lost its last second, a gateway killed between storing a job and sending it), a job
still ``pending`` or ``running`` is sent to the workers again, a bounded number of times, then
failed with the reason. Celery beat runs ``run_sweeps`` every few seconds on the sweeper worker
(``services/sweeper``); everything here is a plain function, tested directly.

When is a job's message lost? Celery's Redis transport keeps every message of a queue either in
the queue or, once delivered, in that queue's unacknowledged hash until the worker acknowledges it
(a killed worker's messages come back from there after the queue's visibility timeout,
``shared.celery_app.QUEUE_POLICIES``). So when a stage's broker backlog (both together) is zero,
no message for that stage exists anywhere, and a job that has waited for that stage for longer
than ``grace_s`` lost its message: it is sent again at once. A job that waited ``deadline_s`` is
sent again whatever the backlog says (a backstop: a queue that never drains under steady load).
Sending again is safe: the tasks re-read the row, and each update is a compare-and-set.

Sweeps are a registry (``SWEEPS``): another liveness check (training jobs, say) is a function
``fn(ctx) -> counts`` added to it, and runs on the same beat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from celery import Celery
from sqlalchemy.orm.exc import StaleDataError

from shared import jobs
from shared.celery_app import broker_backlog
from shared.db import session_scope
from shared.dispatch import send_classification, send_hedge
from shared.tables import utcnow

__all__ = ["SweepPolicy", "SweepContext", "Sweep", "SWEEPS", "run_sweeps", "sweep_classification_jobs",
           "sweep_training_jobs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPolicy:
    grace_s: float = 15.0  # lost: waited this long for a stage that has no message at all
    deadline_s: float = 300.0  # overdue: waited this long, whatever the broker holds
    max_attempts: int = 5  # sends in all (the gateway's first one included); then failed
    batch: int = 500  # most jobs looked at per sweep
    training_heartbeat_timeout_s: float = 60.0  # a running training job silent this long: its trainer died


@dataclass
class SweepContext:
    database_url: str
    celery: Celery  # sends tasks; its broker is read for backlogs
    policy: SweepPolicy = field(default_factory=SweepPolicy)
    now: datetime = field(default_factory=utcnow)
    on_finished: Callable[[str], None] = lambda job_id: None  # e.g. publish a completion event


Sweep = Callable[[SweepContext], dict[str, int]]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC


def sweep_classification_jobs(ctx: SweepContext) -> dict[str, int]:
    """Send lost or overdue classification jobs again; fail those out of attempts. Returns counts.

    The backlogs are read first: with the broker down this raises and nothing is counted as an
    attempt (sending would fail anyway)."""
    policy = ctx.policy
    backlog = {stage: broker_backlog(ctx.celery, stage) for stage in ("inference", "hedger")}
    with session_scope(ctx.database_url) as session:
        candidates = [(job.id, job.updated_at) for job in
                      jobs.unfinished_before(session, ctx.now - timedelta(seconds=policy.grace_s), policy.batch)]
    counts = {"lost": 0, "overdue": 0, "failed": 0}
    for job_id, seen_updated_at in candidates:
        try:
            outcome = _sweep_one(ctx, job_id, seen_updated_at, backlog)
        except StaleDataError:  # a worker moved the job meanwhile: it is not lost
            continue
        if outcome:
            counts[outcome] += 1
    return counts


def _sweep_one(ctx: SweepContext, job_id, seen_updated_at: datetime, backlog: dict[str, int]) -> str | None:  # noqa: ANN001
    policy = ctx.policy
    with session_scope(ctx.database_url) as session:
        job = jobs.get_job(session, job_id)
        if job is None or job.status.finished or job.updated_at != seen_updated_at:
            return None  # moved since we looked
        stage = jobs.owed_stage(job)
        waited = (ctx.now - _aware(job.updated_at)).total_seconds()
        outcome = "lost" if backlog[stage] == 0 else "overdue" if waited >= policy.deadline_s else None
        if outcome is None:
            return None
        if job.attempts >= policy.max_attempts:
            why = "its message was lost" if outcome == "lost" else f"no progress for {waited:.0f} s"
            jobs.mark_failed(session, job_id, "gave_up",
                             f"not finished after {job.attempts} attempts ({stage} owed; {why})")
            outcome = "failed"
        else:
            jobs.mark_redispatched(session, job)  # flushed: a compare-and-set on the row
            (send_hedge if stage == "hedger" else send_classification)(ctx.celery, str(job.id))
            log.warning("job %s (%s, %s owed) %s after %.0f s: sent again (attempt %d)", job.id, job.status.value,
                        stage, outcome, waited, job.attempts)
    if outcome == "failed":
        log.warning("job %s failed: out of attempts", job_id)
        ctx.on_finished(str(job_id))
    return outcome


# name -> sweep; run in this order on every beat
def sweep_training_jobs(ctx: SweepContext) -> dict[str, int]:
    """Fail running training jobs whose trainer stopped beating (killed, out of memory, node lost):
    a job is never left 'running' forever, even when no trainer comes back to find it."""
    from shared import training_jobs

    with session_scope(ctx.database_url) as session:
        failed = training_jobs.fail_stale(session, ctx.policy.training_heartbeat_timeout_s)
        for job in failed:
            log.warning("training job %s failed: %s", job.id, job.error)
        return {"failed": len(failed)}


SWEEPS: dict[str, Sweep] = {"classification_jobs": sweep_classification_jobs, "training_jobs": sweep_training_jobs}


def run_sweeps(ctx: SweepContext, sweeps: dict[str, Sweep] | None = None) -> dict[str, dict[str, int] | str]:
    """Every sweep, each isolated: one that fails (its database or broker is down) is logged and
    reported, and the others still run."""
    report: dict[str, dict[str, int] | str] = {}
    for name, sweep in (SWEEPS if sweeps is None else sweeps).items():
        try:
            report[name] = sweep(ctx)
        except Exception as exc:  # noqa: BLE001 - next beat tries again
            log.warning("sweep %s failed: %s: %s", name, type(exc).__name__, exc)
            report[name] = f"failed: {type(exc).__name__}: {exc}"
    return report

