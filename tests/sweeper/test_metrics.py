"""The deployment gauges the sweeper exports, read from a real database, Redis and broker."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis

from services.sweeper import metrics
from shared import jobs, training_jobs
from shared.celery_app import create_celery_app
from shared.db import run_migrations, session_scope
from shared.dispatch import send_classification
from shared.heartbeat import beat
from shared.sweeper import SweepContext
from shared.tables import ModelVersion, utcnow


@pytest.fixture
def setup(database_url: str, redis_url: str):
    run_migrations(database_url)
    namespace = f"metrics-test-{uuid.uuid4().hex[:8]}"
    app = create_celery_app(redis_url, namespace, main="test")
    client = redis.Redis.from_url(redis_url)
    yield database_url, app, client, namespace
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)
    client.close()
    app.close()


def gauge(g, **labels) -> float:
    return g.labels(**labels)._value.get() if labels else g._value.get()  # noqa: SLF001


def test_liveness_backlog_oldest_job_model_and_training(setup):
    db, app, client, ns = setup
    now = utcnow()
    seen_at = now + timedelta(seconds=30)  # the sweep looks 30 s later
    beat(client, ns, "inference", "inference@a", now=seen_at.timestamp() - 1)
    beat(client, ns, "inference", "inference@b", now=seen_at.timestamp() - 60)  # silent for a minute: dead
    with session_scope(db) as session:
        old = jobs.create_job(session, "ab" * 32, 0.9)
        old.created_at = now - timedelta(seconds=120)
        jobs.create_job(session, "cd" * 32, 0.9)
        session.add(ModelVersion(version="v7", key="v7", card={}, active=True))
        job = training_jobs.create(session, "quick", {}, None)
        session.flush()
        training_jobs.claim(session, job.id, "trainer@x")
        training_jobs.beat(session, job.id, progress=0.25)
        job_id = str(old.id)
    send_classification(app, job_id)
    seen = metrics.observe_deployment(SweepContext(database_url=db, celery=app, now=seen_at),
                                      client, ns)
    assert seen["live"] == {"inference": 1, "hedger": 0, "sweeper": 0, "trainer": 0}
    assert gauge(metrics.LIVE_WORKERS, stage="inference") == 1 and gauge(metrics.LIVE_WORKERS, stage="hedger") == 0
    assert seen["backlog"]["inference"] == 1 and gauge(metrics.QUEUE_MESSAGES, queue="inference") == 1
    assert seen["oldest_s"] == pytest.approx(150, abs=1)
    assert gauge(metrics.ACTIVE_MODELS) == 1 and gauge(metrics.ACTIVE_MODEL, version="v7") == 1
    assert gauge(metrics.TRAINING_JOBS, status="running") == 1
    assert gauge(metrics.TRAINING_PROGRESS) == 0.25
    assert seen["training_heartbeat_age_s"] == pytest.approx(30, abs=2)  # beat just now, seen 30 s on


def test_no_active_model_reads_zero(setup):
    db, app, client, ns = setup
    metrics.observe_deployment(SweepContext(database_url=db, celery=app), client, ns)
    assert gauge(metrics.ACTIVE_MODELS) == 0
    assert gauge(metrics.OLDEST_WAITING) == 0 and gauge(metrics.TRAINING_HEARTBEAT_AGE) == 0


def test_the_sweep_report_becomes_counters():
    before = gauge(metrics.SWEEP_ACTIONS, sweep="classification_jobs", action="lost")
    failures = gauge(metrics.SWEEP_FAILURES, sweep="training_jobs")
    metrics.count_sweep_report({"classification_jobs": {"lost": 2, "overdue": 0},
                                "training_jobs": "failed: OperationalError: down"})
    assert gauge(metrics.SWEEP_ACTIONS, sweep="classification_jobs", action="lost") == before + 2
    assert gauge(metrics.SWEEP_FAILURES, sweep="training_jobs") == failures + 1
