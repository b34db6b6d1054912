"""The automatic retrain trigger (run by beat): off by default, after N feedback items, on a
schedule, never while a job is queued or running."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.trainer.config import TrainerSettings
from services.trainer.tasks import AUTO_REQUESTER, auto_retrain
from shared import feedback, jobs
from shared import training_jobs as tj
from shared.auth import Caller, Role
from shared.db import run_migrations, session_scope
from shared.tables import utcnow
from shared.taxonomy import load_taxonomy

ANSWER = {"answer": {"node": {"name": "body.top"}}}


@pytest.fixture
def url(database_url):
    run_migrations(database_url)
    return database_url


def settings(url, **kw) -> TrainerSettings:  # noqa: ANN001
    return TrainerSettings(database_url=url, **kw)


def give_feedback(url, n: int) -> None:  # noqa: ANN001
    taxonomy, caller = load_taxonomy(), Caller("alice", Role.client)
    with session_scope(url) as session:
        for _ in range(n):
            job = jobs.create_job(session, "0" * 64, 0.9, owner_id="alice")
            jobs.mark_done(session, job, ANSWER, {})
            feedback.give(session, str(job.id), caller, taxonomy, correct=True)


def test_off_by_default(url):
    give_feedback(url, 5)
    enqueued: list[str] = []
    assert auto_retrain(enqueued.append, settings(url)) is None and enqueued == []


def test_after_n_feedback_items_a_job_is_created_and_enqueued(url):
    s = settings(url, auto_retrain_after_feedback=3, auto_retrain_mode="recalibrate")
    enqueued: list[str] = []
    give_feedback(url, 2)
    assert auto_retrain(enqueued.append, s) is None
    give_feedback(url, 1)
    job_id = auto_retrain(enqueued.append, s)
    assert enqueued == [job_id]
    with session_scope(url) as session:
        job = tj.get(session, job_id)
        assert job.mode == "recalibrate" and job.requested_by == AUTO_REQUESTER and "3 feedback" in job.log_tail[0]
    assert auto_retrain(enqueued.append, s) is None  # one is queued: no second
    with session_scope(url) as session:
        tj.request_cancel(session, job_id)
    assert auto_retrain(enqueued.append, s) is None  # the count starts again after the last job
    give_feedback(url, 3)
    assert auto_retrain(enqueued.append, s) is not None


def test_on_a_schedule(url):
    s = settings(url, auto_retrain_every_s=3600)
    enqueued: list[str] = []
    first = auto_retrain(enqueued.append, s)  # no job ever: due
    assert first is not None
    with session_scope(url) as session:
        tj.request_cancel(session, first)
    assert auto_retrain(enqueued.append, s) is None  # the last one is minutes old
    assert auto_retrain(enqueued.append, s, now=utcnow() + timedelta(hours=2)) is not None
