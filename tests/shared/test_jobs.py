"""Job state transitions as compare-and-set: of two deliveries racing on one job, the first write
wins and the other learns it (StaleDataError, which the tasks retry as transient)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm.exc import StaleDataError

from shared import jobs
from shared.celery_app import leaves_job_to_sweeper
from shared.db import get_sessionmaker, run_migrations, session_scope
from shared.tables import JobStatus


@pytest.fixture
def db(database_url: str) -> str:
    run_migrations(database_url)
    return database_url


def test_a_second_delivery_cannot_overwrite_a_finished_result(db):
    with session_scope(db) as session:
        job_id = str(jobs.create_job(session, "cd" * 32, 0.9).id)
    with session_scope(db) as session:
        jobs.claim_for_inference(session, job_id)
    first, second = get_sessionmaker(db)(), get_sessionmaker(db)()
    try:
        a, b = jobs.get_job(first, job_id), jobs.get_job(second, job_id)  # both read 'running'
        jobs.mark_done(first, a, {"answer": "first"}, {})
        first.commit()
        with pytest.raises(StaleDataError) as raised:
            jobs.mark_done(second, b, {"answer": "second"}, {})
        second.rollback()
    finally:
        first.close()
        second.close()
    assert leaves_job_to_sweeper(raised.value)  # retried as transient, never fails the job
    with session_scope(db) as session:
        job = jobs.get_job(session, job_id)
        assert job.status is JobStatus.done and job.result == {"answer": "first"}


def test_unfinished_before_lists_pending_and_running_oldest_first(db):
    from datetime import timedelta

    from shared.tables import utcnow

    with session_scope(db) as session:
        old = jobs.create_job(session, "ef" * 32, 0.9)
        older = jobs.create_job(session, "ef" * 32, 0.9)
        done = jobs.create_job(session, "ef" * 32, 0.9)
        old.updated_at, older.updated_at = utcnow() - timedelta(seconds=30), utcnow() - timedelta(seconds=60)
        done.status, done.updated_at = JobStatus.done, utcnow() - timedelta(seconds=90)
        older.status = JobStatus.running
        ids = [str(older.id), str(old.id)]
    with session_scope(db) as session:
        found = jobs.unfinished_before(session, utcnow() - timedelta(seconds=10), limit=10)
        assert [str(j.id) for j in found] == ids
        assert [jobs.owed_stage(j) for j in found] == ["inference", "inference"]
