"""The training-job state machine on a real database: one job runs at a time, cancels, the sweep."""

from __future__ import annotations

import pytest

from shared import training_jobs as tj
from shared.db import run_migrations, session_scope
from shared.tables import TrainingJobStatus as S


@pytest.fixture
def url(database_url):
    run_migrations(database_url)
    return database_url


def _create(url, mode="quick"):
    with session_scope(url) as session:
        return str(tj.create(session, mode, {}, "alice").id)


def _status(url, job_id):
    with session_scope(url) as session:
        return tj.get(session, job_id).status


def test_only_one_job_holds_the_running_slot(url):
    first, second = _create(url), _create(url)
    with session_scope(url) as session:
        assert tj.claim(session, first, "w1").status is S.running
    with pytest.raises(tj.SlotBusy), session_scope(url) as session:
        tj.claim(session, second, "w2")
    assert _status(url, second) is S.queued
    with session_scope(url) as session:
        tj.finish(session, first, metrics={"top1": 0.5}, candidate_version="v2", gate=None)
    with session_scope(url) as session:
        assert tj.claim(session, second, "w2").status is S.running


def test_a_claimed_or_finished_job_is_not_claimed_again(url):
    job = _create(url)
    with session_scope(url) as session:
        assert tj.claim(session, job, "w1") is not None
    with session_scope(url) as session:
        assert tj.claim(session, job, "w1") is None  # a redelivered message
    with session_scope(url) as session:
        assert tj.claim(session, "not-a-uuid", "w1") is None


def test_cancel_of_a_queued_job_is_immediate_and_of_a_finished_one_refused(url):
    job = _create(url)
    with session_scope(url) as session:
        assert tj.request_cancel(session, job).status is S.cancelled
    with session_scope(url) as session:
        assert tj.claim(session, job, "w1") is None
    with pytest.raises(tj.JobFinished, match="already finished \\(cancelled\\)"), session_scope(url) as session:
        tj.request_cancel(session, job)


def test_a_running_job_is_asked_to_stop_through_its_heartbeat(url):
    job = _create(url)
    with session_scope(url) as session:
        tj.claim(session, job, "w1")
    with session_scope(url) as session:
        assert tj.beat(session, job, stage="fit", progress=0.4, log_tail=["a", "b"]) is False
    with session_scope(url) as session:
        assert tj.request_cancel(session, job).status is S.running
    with session_scope(url) as session:
        assert tj.beat(session, job, progress=0.5) is True
    with session_scope(url) as session:
        row = tj.mark_cancelled(session, job)
        assert row.status is S.cancelled and row.running_slot is None and row.progress == 0.5


def test_the_sweep_fails_a_job_whose_worker_stopped_beating(url):
    job, other = _create(url), _create(url)
    with session_scope(url) as session:
        tj.claim(session, job, "trainer@a")
    with session_scope(url) as session:
        assert tj.fail_stale(session, timeout_s=3600) == []  # it beat just now
    with session_scope(url) as session:
        assert [str(j.id) for j in tj.fail_stale(session, timeout_s=0)] == [job]
    with session_scope(url) as session:
        row = tj.get(session, job)
        assert row.status is S.failed and row.error_code == "trainer_died" and "trainer@a" in row.error
        assert tj.claim(session, other, "trainer@b") is not None  # the slot is free again


def test_a_worker_restarting_under_its_name_fails_the_job_it_died_with(url):
    job = _create(url)
    with session_scope(url) as session:
        tj.claim(session, job, "trainer@pod-1")
    with session_scope(url) as session:
        assert tj.fail_stale(session, timeout_s=3600, dead_worker="trainer@pod-2") == []
        failed = tj.fail_stale(session, timeout_s=3600, dead_worker="trainer@pod-1")
        assert [str(j.id) for j in failed] == [job] and "restarted" in failed[0].error


def test_the_sweeper_service_fails_dead_training_jobs(url):
    from shared.sweeper import SweepContext, SweepPolicy, run_sweeps, sweep_training_jobs

    job = _create(url)
    with session_scope(url) as session:
        tj.claim(session, job, "trainer@gone")
    ctx = SweepContext(database_url=url, celery=None, policy=SweepPolicy(training_heartbeat_timeout_s=3600))
    assert run_sweeps(ctx, {"training_jobs": sweep_training_jobs}) == {"training_jobs": {"failed": 0}}
    ctx.policy = SweepPolicy(training_heartbeat_timeout_s=0)
    assert sweep_training_jobs(ctx) == {"failed": 1}
    assert _status(url, job) is S.failed
