"""Forged broker messages against the real workers (issue [G2]): whoever can write to Redis can
send any task or control message; none of them may fail a job or stop a worker."""

from __future__ import annotations

import pytest

from shared import jobs
from shared.celery_app import HEDGE, create_celery_app
from shared.db import session_scope
from shared.tables import JobStatus
from tests.e2e.test_pipeline import post
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def celery(system):  # noqa: ANN001
    app = create_celery_app(system.redis_url, system.namespace, main="e2e-forger")
    yield app
    app.close()


def _running_job(system) -> str:  # noqa: ANN001
    """A job as inference leaves it while it works: running, no probabilities yet."""
    key = system.store.put(jpeg_bytes(seed=77))
    with session_scope(system.database_url) as session:
        job = jobs.create_job(session, key, 0.9, "forged-test")
        job.status = JobStatus.running
        return str(job.id)


def test_a_forged_hedge_for_running_jobs_fails_none_of_them(system, celery):
    job_ids = [_running_job(system) for _ in range(16)]
    sent = [celery.send_task(HEDGE, args=({"job_id": j},), ignore_result=False) for j in job_ids]
    for result in sent:
        assert result.get(timeout=30) is None  # each message was handled: dropped
    statuses = [system.job_row(j)["status"] for j in job_ids]
    assert JobStatus.failed not in statuses, statuses


def test_control_messages_stop_no_worker_and_no_consumer(system, celery):
    celery.control.broadcast("cancel_consumer", arguments={"queue": "inference"})
    celery.control.broadcast("shutdown")
    celery.control.broadcast("pool_shrink", arguments={"n": 1})
    assert celery.control.ping(timeout=2.0)  # ping is the one command obeyed
    r = post(system, jpeg_bytes(seed=78), wait=20)
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    assert system.alive("inference") and system.alive("hedger") and system.alive("sweeper")
