"""Redelivery of ``inference.classify`` with real workers: late acknowledgement means a message
can come again after the job moved on, and the task must find the job's real state.

* inferred, hedging still owed (the hedger died before writing): the network is not run again,
  the chain goes on to ``hedger.hedge`` and the job gets its answer;
* finished: the chain stops there, nothing downstream is sent and the row is left as it was.

The chain is sent the way the gateway sends it, by task name, to the running workers.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from celery import chain

from shared import jobs
from shared.celery_app import CLASSIFY, HEDGE, create_celery_app
from shared.db import session_scope
from shared.schemas import HedgeTaskIn, InferenceTaskIn
from shared.tables import JobStatus
from tests.e2e.test_pipeline import post
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def celery(system):  # noqa: ANN001
    return create_celery_app(system.redis_url, system.namespace, main="e2e-redelivery")


def _classify_again(celery, job_id: str, then):  # noqa: ANN001
    """Deliver ``inference.classify`` for ``job_id`` again, chained into ``then``; its result is kept."""
    first = celery.signature(CLASSIFY, args=(InferenceTaskIn(job_id=job_id).model_dump(),), ignore_result=False)
    return chain(first, then).apply_async().parent


def _wait_status(system, job_id: str, status: JobStatus, timeout_s: float = 20.0) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while (row := system.job_row(job_id))["status"] is not status and time.monotonic() < deadline:
        time.sleep(0.05)
    return row


def test_redelivered_after_inference_only_hedging_runs(system, celery):
    job_id = post(system, jpeg_bytes(seed=21), wait=20).json()["id"]
    done = system.job_row(job_id)
    with session_scope(system.database_url) as session:  # the hedger died before writing its answer
        job = jobs.get_job(session, job_id)
        job.status, job.result, job.finished_at = JobStatus.running, None, None
    first = _classify_again(celery, job_id, celery.signature(HEDGE))
    assert first.get(timeout=20) == HedgeTaskIn(job_id=job_id).model_dump()  # hedging still owed
    row = _wait_status(system, job_id, JobStatus.done)
    assert row["status"] is JobStatus.done and row["result"] == done["result"]
    assert row["leaf_probs"] == done["leaf_probs"]
    assert row["timings"]["inference_ms"] == done["timings"]["inference_ms"]  # the network did not run again


def test_redelivered_after_the_job_finished_the_chain_stops(system, celery):
    job_id = post(system, jpeg_bytes(seed=22), wait=20).json()["id"]
    before = system.job_row(job_id)
    assert before["status"] is JobStatus.done
    # the next link goes to a queue nobody consumes: a message there means the chain went on
    probe_queue = f"e2e-probe-{uuid.uuid4().hex}"
    first = _classify_again(celery, job_id, celery.signature(HEDGE, queue=probe_queue))
    assert first.get(timeout=20) is None
    # Celery sends the next link before it stores the result, so by now it would be there
    assert redis.Redis.from_url(system.redis_url).llen(f"{system.namespace}:{probe_queue}") == 0
    assert system.job_row(job_id) == before


def test_the_probe_sees_a_chain_that_goes_on(system, celery):
    """The probe of the test above can fail: for a job that still needs hedging the message is there."""
    job_id = post(system, jpeg_bytes(seed=23), wait=20).json()["id"]
    with session_scope(system.database_url) as session:
        job = jobs.get_job(session, job_id)
        job.status, job.result, job.finished_at = JobStatus.running, None, None
    probe_queue = f"e2e-probe-{uuid.uuid4().hex}"
    first = _classify_again(celery, job_id, celery.signature(HEDGE, queue=probe_queue))
    assert first.get(timeout=20) == HedgeTaskIn(job_id=job_id).model_dump()
    client = redis.Redis.from_url(system.redis_url)
    assert client.llen(f"{system.namespace}:{probe_queue}") == 1
    client.delete(f"{system.namespace}:{probe_queue}")
    with session_scope(system.database_url) as session:  # leave the shared system's rows finished
        jobs.mark_failed(session, job_id, "test", "probe only")
