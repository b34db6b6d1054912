"""The sweeper's rules, run directly against a real database and a real Redis broker (no workers:
what the sweep sends is read back from the broker's queues)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import redis

from shared import jobs
from shared.celery_app import CLASSIFY, HEDGE, broker_backlog, create_celery_app
from shared.db import run_migrations, session_scope
from shared.dispatch import send_classification
from shared.sweeper import SweepContext, SweepPolicy, run_sweeps, sweep_classification_jobs
from shared.tables import JobStatus, utcnow

POLICY = SweepPolicy(grace_s=15, deadline_s=300, max_attempts=3)


@pytest.fixture
def db(database_url: str) -> str:
    run_migrations(database_url)
    return database_url


@pytest.fixture
def broker(redis_url: str):
    """A Celery app on its own namespace (empty queues), and a raw client to read them."""
    namespace = f"sweeper-test-{uuid.uuid4().hex[:8]}"
    app = create_celery_app(redis_url, namespace, main="test")
    client = redis.Redis.from_url(redis_url)
    yield app, client, namespace
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)
    client.close()
    app.close()


def sent(client: redis.Redis, namespace: str, queue: str) -> list[tuple[str, str]]:
    """(task name, job id) of each message waiting in ``queue``."""
    out = []
    for raw in client.lrange(f"{namespace}:{queue}", 0, -1):
        headers = json.loads(raw)["headers"]
        out.append((headers["task"], headers["argsrepr"].split("'job_id': '")[1].split("'")[0]))
    return out


def make_job(db: str, *, age_s: float, status: JobStatus = JobStatus.pending, probs: bool = False,
             attempts: int = 1) -> str:
    with session_scope(db) as session:
        job = jobs.create_job(session, "ab" * 32, 0.9)
        job.status, job.attempts = status, attempts
        if probs:
            job.leaf_probs, job.model_version = {"feet.shoes": 1.0}, "tiny-1"
        job.updated_at = utcnow() - timedelta(seconds=age_s)
        return str(job.id)


def row(db: str, job_id: str):
    with session_scope(db) as session:
        return jobs.get_job(session, job_id)


def ctx(db: str, app, **kw) -> SweepContext:
    return SweepContext(database_url=db, celery=app, policy=POLICY, **kw)


def test_a_pending_job_whose_message_is_gone_is_sent_again(db, broker):
    app, client, ns = broker
    job_id = make_job(db, age_s=60)
    assert sweep_classification_jobs(ctx(db, app)) == {"lost": 1, "overdue": 0, "failed": 0}
    assert sent(client, ns, "inference") == [(CLASSIFY, job_id)]  # the chain's first step, as the gateway sends
    after = row(db, job_id)
    assert after.attempts == 2 and after.status is JobStatus.pending
    # sent again just now: the next sweep leaves it alone (it is no longer past the grace)
    assert sweep_classification_jobs(ctx(db, app)) == {"lost": 0, "overdue": 0, "failed": 0}
    assert row(db, job_id).attempts == 2


def test_a_job_with_probabilities_is_owed_hedging_only(db, broker):
    app, client, ns = broker
    job_id = make_job(db, age_s=60, status=JobStatus.running, probs=True)
    assert sweep_classification_jobs(ctx(db, app))["lost"] == 1
    assert sent(client, ns, "hedger") == [(HEDGE, job_id)] and sent(client, ns, "inference") == []


def test_a_running_job_without_probabilities_is_owed_inference(db, broker):
    app, client, ns = broker
    job_id = make_job(db, age_s=60, status=JobStatus.running)
    sweep_classification_jobs(ctx(db, app))
    assert sent(client, ns, "inference") == [(CLASSIFY, job_id)]


def test_a_job_waiting_behind_a_backlog_is_left_alone_until_its_deadline(db, broker):
    app, client, ns = broker
    queued = make_job(db, age_s=60)
    send_classification(app, str(uuid.uuid4()))  # the stage's queue holds a message: nothing is lost
    assert broker_backlog(app, "inference") == 1
    assert sweep_classification_jobs(ctx(db, app)) == {"lost": 0, "overdue": 0, "failed": 0}
    assert row(db, queued).attempts == 1
    later = ctx(db, app, now=utcnow() + timedelta(seconds=POLICY.deadline_s))
    assert sweep_classification_jobs(later)["overdue"] == 1 and row(db, queued).attempts == 2


def test_a_job_out_of_attempts_fails_with_the_reason_and_its_waiters_are_told(db, broker):
    app, client, ns = broker
    job_id = make_job(db, age_s=60, attempts=POLICY.max_attempts)
    told = []
    assert sweep_classification_jobs(ctx(db, app, on_finished=told.append))["failed"] == 1
    failed = row(db, job_id)
    assert failed.status is JobStatus.failed and failed.error_code == "gave_up"
    assert "after 3 attempts" in failed.error and "inference owed" in failed.error
    assert told == [job_id] and sent(client, ns, "inference") == []


def test_recent_and_finished_jobs_are_left_alone(db, broker):
    app, client, ns = broker
    recent = make_job(db, age_s=1)
    done = make_job(db, age_s=600, status=JobStatus.done)
    failed = make_job(db, age_s=600, status=JobStatus.failed)
    assert sweep_classification_jobs(ctx(db, app)) == {"lost": 0, "overdue": 0, "failed": 0}
    assert [row(db, j).attempts for j in (recent, done, failed)] == [1, 1, 1]
    assert sent(client, ns, "inference") == []


def test_with_the_broker_down_the_sweep_fails_and_counts_no_attempt(db):
    app = create_celery_app("redis://127.0.0.1:1/0", "nowhere", main="test")
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    job_id = make_job(db, age_s=60)
    report = run_sweeps(ctx(db, app))
    assert report["classification_jobs"].startswith("failed: ")
    assert row(db, job_id).attempts == 1 and row(db, job_id).status is JobStatus.pending


def test_one_failing_sweep_does_not_stop_the_others(db, broker):
    app, _, _ = broker

    def broken(_ctx):
        raise RuntimeError("training table unreachable")

    report = run_sweeps(ctx(db, app), {"broken": broken, "classification_jobs": sweep_classification_jobs})
    assert report["broken"] == "failed: RuntimeError: training table unreachable"
    assert report["classification_jobs"] == {"lost": 0, "overdue": 0, "failed": 0}
