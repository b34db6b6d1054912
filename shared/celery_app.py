"""The one place where Celery is configured and task names are routed to queues.

Task names are namespaced by service and each namespace has its own queue, so each worker starts
with ``-Q <service>`` and never sees another service's tasks. Producers (the gateway, the workers
chaining to the next step) send by *name*: the gateway never imports worker code.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from kombu import Exchange, Queue

__all__ = ["QUEUES", "TASK_ROUTES", "CLASSIFY", "HEDGE", "RUN_JOB", "TRAINING_SWEEP", "AUTO_RETRAIN",
           "SWEEP", "RETENTION", "QUEUE_POLICIES", "QueuePolicy", "create_celery_app", "key_prefix", "unacked_keys",
           "broker_backlog", "transient_errors", "leaves_job_to_sweeper", "RETRY_POLICY", "ALLOWED_CONTROL_COMMANDS",
           "restrict_remote_control"]

QUEUES = ("inference", "hedger", "trainer", "sweeper")
TASK_ROUTES = {f"{queue}.*": {"queue": queue} for queue in QUEUES}

CLASSIFY = "inference.classify"  # InferenceTaskIn -> HedgeTaskIn (chained into HEDGE)
HEDGE = "hedger.hedge"  # HedgeTaskIn -> None; stores the result, marks the job done
RUN_JOB = "trainer.run_job"  # TrainingJobTaskIn -> None; runs a training_jobs row to its end
TRAINING_SWEEP = "trainer.sweep"  # () -> None; fails training jobs whose worker stopped beating (beat)
AUTO_RETRAIN = "trainer.auto_retrain"  # () -> None; the automatic trigger (beat, off by default)
SWEEP = "sweeper.sweep"  # () -> counts; runs the sweeps of shared.sweeper (scheduled by beat)
RETENTION = "sweeper.retention"  # () -> counts; deletes what outlived its retention (shared.retention, beat)


@dataclass(frozen=True)
class QueuePolicy:
    """How a queue's consumers hold messages.

    ``visibility_timeout_s``: an unacknowledged message (its worker was killed) goes back to the
    queue after this long. It must exceed the longest task *plus* the longest retry countdown (a
    retried task waits out its countdown as an unacknowledged message), or a healthy task runs twice;
    every task here is idempotent, so that costs work, never a wrong answer. Each queue keeps its
    unacknowledged messages under its own keys (``unacked_keys``): kombu's restore pass applies the
    restoring consumer's timeout to everything under its keys, so a shared hash would make the
    inference worker hand back a training run after 30 s.
    ``prefetch_multiplier``: messages reserved per worker thread; a killed worker strands that many
    until the visibility timeout, so long tasks reserve one.
    """

    visibility_timeout_s: float
    prefetch_multiplier: int


# Inference and hedging take milliseconds (a 40 MP decode a few seconds) and retry at most
# RETRY_POLICY's retry_backoff_max later; training takes hours; a sweep a fraction of a second.
# The inference worker's prefetch is its own setting (threads x multiplier feed one micro-batch).
QUEUE_POLICIES = {
    "inference": QueuePolicy(visibility_timeout_s=30.0, prefetch_multiplier=2),
    "hedger": QueuePolicy(visibility_timeout_s=30.0, prefetch_multiplier=4),
    "trainer": QueuePolicy(visibility_timeout_s=6 * 3600.0, prefetch_multiplier=1),
    "sweeper": QueuePolicy(visibility_timeout_s=60.0, prefetch_multiplier=1),
}
RESTORE_INTERVAL_S = 5  # how often a consumer looks for messages past their visibility timeout


def key_prefix(namespace: str) -> str:
    return f"{namespace}:"


def unacked_keys(queue: str) -> dict[str, str]:
    """kombu's keys for ``queue``'s unacknowledged messages (under the namespace prefix)."""
    return {"unacked_key": f"unacked:{queue}", "unacked_index_key": f"unacked_index:{queue}",
            "unacked_mutex_key": f"unacked_mutex:{queue}"}


def create_celery_app(redis_url: str, namespace: str = "wardrobe", main: str = "wardrobe",
                      queue: str | None = None, log_level: str | None = None) -> Celery:
    """The Celery app of a producer (``queue`` None: the gateway, the launcher) or of the worker
    consuming ``queue``, whose visibility timeout, prefetch and publish retries follow ``QUEUE_POLICIES``.
    ``log_level``: a worker's LOG_LEVEL setting, which then wins over its command line's ``-l``."""
    app = Celery(main, broker=redis_url, backend=redis_url, set_as_current=True)
    if log_level is not None:
        _follow_log_level(log_level)
    prefix = key_prefix(namespace)
    transport = {"global_keyprefix": prefix}
    if queue is not None:
        policy = QUEUE_POLICIES[queue]
        # the restore pass holds a mutex in Redis for its few milliseconds; kombu's default expiry
        # (300 s) would block every restore for five minutes after a consumer (or Redis) died holding it
        transport.update(unacked_keys(queue), visibility_timeout=policy.visibility_timeout_s,
                         unacked_restore_interval=RESTORE_INTERVAL_S, unacked_restore_throttle=1,
                         unacked_mutex_expire=10)
    app.conf.update(
        task_routes=TASK_ROUTES,
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_queue="inference",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # the DB row is the result
        result_expires=600,
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_transport_options=transport,
        task_acks_late=True,  # every task here is idempotent: it re-reads the job row first
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=QUEUE_POLICIES[queue].prefetch_multiplier if queue else 1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
    )
    if queue is not None:
        restrict_remote_control()
        _embedded_beat_dies_with_its_worker()
        # A worker's next hop (inference -> hedger) waits for a restarting broker this long before
        # the task counts as failed; the job row keeps the computed result either way, and the
        # sweeper sends the hop again (shared.sweeper). The gateway keeps the short default and
        # answers 503 at once.
        app.conf.task_publish_retry_policy = {"max_retries": 12, "interval_start": 0.5, "interval_step": 0.5,
                                              "interval_max": 2.0}
    return app


# Remote-control commands a worker obeys. Anyone who can write to the broker can send control
# messages: `shutdown` stopped every worker, `cancel_consumer` left accepted jobs pending while
# /readyz said 200 (issue [G2]). Liveness probes (`wardrobe ping <queue>`, the launcher) need
# `ping`; readiness reads heartbeats (shared/heartbeat.py); nothing else here sends control.
ALLOWED_CONTROL_COMMANDS = frozenset({"ping"})


def restrict_remote_control() -> None:
    """Forget every remote-control command but ``ALLOWED_CONTROL_COMMANDS`` in this process's
    registry (the one a worker's mailbox dispatches from): another command is logged as unknown
    and ignored. Off entirely (``worker_enable_remote_control``) would also silence ``ping``."""
    from celery.worker.control import Panel

    for name in set(Panel.data) - ALLOWED_CONTROL_COMMANDS:
        del Panel.data[name]


def _embedded_beat_dies_with_its_worker() -> None:
    """``celery worker -B`` forks its beat process; the parent-death signal the launcher gives a
    worker is not inherited across fork, so a killed worker would leave its beat running. The
    beat asks for SIGKILL when its worker dies (Linux; elsewhere nothing changes)."""
    from celery.signals import beat_embedded_init

    def die_with_worker(**_: object) -> None:
        import ctypes
        import signal
        import sys

        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except OSError:
                return

    beat_embedded_init.connect(die_with_worker, weak=False, dispatch_uid="wardrobe-beat-dies-with-worker")


def _follow_log_level(level: str) -> None:
    """Set the root logger to ``level`` once Celery has configured logging (from ``-l``), with
    the libraries' routine lines below it unless ``level`` is DEBUG (``shared.log_levels``)."""
    from celery.signals import after_setup_logger

    from shared.log_levels import quiet_libraries

    def set_level(logger, **_: object) -> None:  # noqa: ANN001 - Celery passes the root logger
        logger.setLevel(level)
        quiet_libraries(level)

    after_setup_logger.connect(set_level, weak=False)


def broker_backlog(app: Celery, queue: str) -> int:
    """Messages the broker holds for ``queue``: waiting in it, or delivered and not yet
    acknowledged (running, reserved by a worker, waiting out a retry countdown, or stranded by a
    killed worker until its visibility timeout). Zero means no message for this queue exists."""
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        waiting = channel.queue_declare(queue=queue).message_count
        return waiting + int(channel.client.hlen(unacked_keys(queue)["unacked_key"]))


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth a retry (the database or Redis blinked, or another delivery of the same task
    changed the job first: StaleDataError); anything else fails the job once. A task that runs out
    of retries on one of these leaves its job as it is (``leaves_job_to_sweeper``)."""
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.orm.exc import StaleDataError

    return (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, KombuOperationalError,
            StaleDataError)


def leaves_job_to_sweeper(exc: BaseException) -> bool:
    """A task that gave up on a transient error must not fail its job: the outage (the broker that
    would carry the retry, the database) is not the job's fault. The row keeps what was computed,
    and the sweeper (shared.sweeper) sends the job again once the broker and database are back."""
    return isinstance(exc, transient_errors())


# Bounded retries with exponential backoff and jitter, for transient errors only.
# The longest countdown (retry_backoff_max) stays well under the visibility timeouts above.
RETRY_POLICY = dict(retry_backoff=True, retry_backoff_max=10, retry_jitter=True, max_retries=5)
