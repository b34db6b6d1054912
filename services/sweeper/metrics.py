"""Prometheus metrics of the sweeper: the deployment as a whole, observed once per sweep.

The sweeper is the one process per deployment that already reads the broker and the job tables
every few seconds, so the gauges an operator alerts on come from here, once, rather than from each
gateway replica: live workers per stage (the heartbeats that ``/readyz`` used to require), broker
backlog per queue, how long the oldest unfinished job has waited, whether a model is active, and the
training jobs (how many per status, the running one's progress and how long since it last beat).
The sweeps' own actions are counted in ``wardrobe_sweep_actions_total``. If the sweeper itself is
down these go stale: the alert rules watch ``up`` for it too (deploy/monitoring/).
"""

from __future__ import annotations

from datetime import datetime, timezone

import redis
from prometheus_client import Counter, Gauge
from sqlalchemy import func, select

from shared.celery_app import broker_backlog
from shared.db import session_scope
from shared.heartbeat import STAGES, live_workers
from shared.sweeper import SweepContext
from shared.tables import ClassificationJob, JobStatus, ModelVersion, TrainingJob, TrainingJobStatus

__all__ = ["observe_deployment", "count_sweep_report", "LIVE_WORKERS", "QUEUE_MESSAGES", "OLDEST_WAITING",
           "ACTIVE_MODEL", "TRAINING_JOBS", "TRAINING_PROGRESS", "TRAINING_HEARTBEAT_AGE", "SWEEP_ACTIONS"]

LIVE_WORKERS = Gauge("wardrobe_stage_live_workers", "Worker processes of a stage that beat within the heartbeat "
                     "TTL (shared.heartbeat).", ["stage"])
QUEUE_MESSAGES = Gauge("wardrobe_queue_messages", "Messages the broker holds for a queue (waiting + unacknowledged); "
                       "what KEDA scales on.", ["queue"])
JOBS_UNFINISHED = Gauge("wardrobe_jobs_unfinished", "Classification jobs pending or running.", ["status"])
OLDEST_WAITING = Gauge("wardrobe_oldest_unfinished_job_seconds", "Age of the oldest pending or running "
                       "classification job (0: none).")
ACTIVE_MODEL = Gauge("wardrobe_active_model", "1 for the version the registry has active; no series: none active.",
                     ["version"])
ACTIVE_MODELS = Gauge("wardrobe_active_models", "Model versions marked active (1 when healthy, 0: nothing to serve).")
TRAINING_JOBS = Gauge("wardrobe_training_jobs", "Training jobs by status.", ["status"])
TRAINING_PROGRESS = Gauge("wardrobe_training_job_progress", "Progress 0-1 of the running training job (0: none).")
TRAINING_HEARTBEAT_AGE = Gauge("wardrobe_training_heartbeat_age_seconds", "Seconds since the running training job's "
                               "trainer last beat (0: none running); a stuck job grows here.")
SWEEP_ACTIONS = Counter("wardrobe_sweep_actions_total", "What the sweeps did (a job sent again, failed, a row "
                        "expired, ...), by sweep and action.", ["sweep", "action"])
SWEEP_FAILURES = Counter("wardrobe_sweep_failures_total", "Sweeps that raised (database or broker down).", ["sweep"])


def _aware(ts: datetime | None) -> datetime | None:
    return ts if ts is None or ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)


def observe_deployment(ctx: SweepContext, client: redis.Redis, namespace: str) -> dict[str, object]:
    """Read the heartbeats, the broker and the tables once; set the gauges; return what was seen."""
    now = ctx.now
    live = {stage: len(live_workers(client, namespace, stage, now=now.timestamp())) for stage in STAGES}
    backlog = {queue: broker_backlog(ctx.celery, queue) for queue in ("inference", "hedger", "trainer")}
    unfinished = (JobStatus.pending, JobStatus.running)
    with session_scope(ctx.database_url) as session:
        by_status = dict(session.execute(select(ClassificationJob.status, func.count())
                                         .where(ClassificationJob.status.in_(unfinished))
                                         .group_by(ClassificationJob.status)).all())
        oldest = _aware(session.scalar(select(func.min(ClassificationJob.created_at))
                                       .where(ClassificationJob.status.in_(unfinished))))
        active = list(session.scalars(select(ModelVersion.version).where(ModelVersion.active.is_(True))))
        training = dict(session.execute(select(TrainingJob.status, func.count()).group_by(TrainingJob.status)).all())
        running = session.scalars(select(TrainingJob).where(TrainingJob.status == TrainingJobStatus.running)).first()
        progress = running.progress if running is not None else 0.0
        beat_at = _aware(running.heartbeat_at or running.started_at) if running is not None else None
    for stage, n in live.items():
        LIVE_WORKERS.labels(stage=stage).set(n)
    for queue, n in backlog.items():
        QUEUE_MESSAGES.labels(queue=queue).set(n)
    for status in unfinished:
        JOBS_UNFINISHED.labels(status=status.value).set(by_status.get(status, 0))
    oldest_s = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    OLDEST_WAITING.set(oldest_s)
    ACTIVE_MODEL.clear()
    for version in active:
        ACTIVE_MODEL.labels(version=version).set(1)
    ACTIVE_MODELS.set(len(active))
    for status in TrainingJobStatus:
        TRAINING_JOBS.labels(status=status.value).set(training.get(status, 0))
    TRAINING_PROGRESS.set(progress)
    heartbeat_age = max(0.0, (now - beat_at).total_seconds()) if beat_at is not None else 0.0
    TRAINING_HEARTBEAT_AGE.set(heartbeat_age)
    return {"live": live, "backlog": backlog, "oldest_s": oldest_s, "active": active,
            "training_progress": progress, "training_heartbeat_age_s": heartbeat_age}


def count_sweep_report(report: dict[str, dict[str, int] | str]) -> None:
    """``run_sweeps``' report into counters: a number per action, a string (the error) per failed sweep."""
    for sweep, counts in report.items():
        if isinstance(counts, str):
            SWEEP_FAILURES.labels(sweep=sweep).inc()
            continue
        for action, n in counts.items():
            if n:
                SWEEP_ACTIONS.labels(sweep=sweep, action=action).inc(n)
