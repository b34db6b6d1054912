"""Per-queue visibility timeouts against a real Redis broker: a killed inference worker's message
comes back after 30 s, while a training run's stays with its worker for hours, even though both
restore passes run on the same Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from shared.celery_app import QUEUE_POLICIES, broker_backlog, create_celery_app


@pytest.fixture
def namespace(redis_url: str):
    ns = f"celery-test-{uuid.uuid4().hex[:8]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{ns}:*"):
        client.delete(key)
    client.close()


def deliver_unacked(app, queue: str) -> None:
    """Take one message off ``queue`` the way a worker does, and never acknowledge it (killed)."""
    app.send_task(f"{queue}.anything", args=({"job_id": "x"},))
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        assert channel.basic_get(queue=queue, no_ack=False) is not None
        channel.do_restore = False  # a killed worker hands nothing back


def waiting(app, queue: str) -> int:
    """Messages in ``queue`` itself (not the ones held unacknowledged)."""
    with app.connection_for_read() as conn:
        return conn.default_channel.queue_declare(queue=queue).message_count


def restore_as(app, queue: str, monkeypatch, later_s: float) -> None:
    """One restore pass of ``queue``'s consumer, ``later_s`` seconds from now."""
    import kombu.transport.redis as transport

    now = time.time()
    monkeypatch.setattr(transport, "time", lambda: now + later_s)
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        channel.qos.restore_visible(num=None, interval=1)
    monkeypatch.undo()


def test_an_unacknowledged_inference_message_returns_after_its_queue_timeout(redis_url, namespace, monkeypatch):
    inference = create_celery_app(redis_url, namespace, main="inference", queue="inference")
    deliver_unacked(inference, "inference")
    assert broker_backlog(inference, "inference") == 1  # held, unacknowledged
    assert waiting(inference, "inference") == 0
    restore_as(inference, "inference", monkeypatch, QUEUE_POLICIES["inference"].visibility_timeout_s - 5)
    assert waiting(inference, "inference") == 0  # not yet
    restore_as(inference, "inference", monkeypatch, QUEUE_POLICIES["inference"].visibility_timeout_s + 5)
    assert waiting(inference, "inference") == 1 and broker_backlog(inference, "inference") == 1  # back in the queue


def test_the_inference_restore_pass_leaves_a_training_run_alone(redis_url, namespace, monkeypatch):
    trainer = create_celery_app(redis_url, namespace, main="trainer", queue="trainer")
    inference = create_celery_app(redis_url, namespace, main="inference", queue="inference")
    deliver_unacked(trainer, "trainer")
    restore_as(inference, "inference", monkeypatch, 3600)  # an hour on: far past inference's 30 s
    restore_as(trainer, "trainer", monkeypatch, 3600)  # and still inside the trainer's own timeout
    assert waiting(trainer, "trainer") == 0
    assert broker_backlog(trainer, "trainer") == 1  # still held by its (long-running) worker
