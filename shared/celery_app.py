"""The one place where Celery is configured and task names are routed to queues.

Task names are namespaced by service and each namespace has its own queue, so each worker starts
with ``-Q <service>`` and never sees another service's tasks. Producers (the gateway, the workers
chaining to the next step) send by *name*: the gateway never imports worker code.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

__all__ = ["QUEUES", "TASK_ROUTES", "CLASSIFY", "HEDGE", "REHEDGE", "RUN_JOB", "SWEEP", "AUTO_RETRAIN",
           "create_celery_app", "key_prefix"]

QUEUES = ("inference", "hedger", "trainer")
TASK_ROUTES = {f"{queue}.*": {"queue": queue} for queue in QUEUES}

CLASSIFY = "inference.classify"  # InferenceTaskIn -> HedgeTaskIn (chained into HEDGE)
HEDGE = "hedger.hedge"  # HedgeTaskIn -> None; stores the result, marks the job done
REHEDGE = "hedger.rehedge"  # RehedgeTaskIn -> ClassificationResult (awaited by the gateway)
RUN_JOB = "trainer.run_job"  # TrainingJobTaskIn -> None; runs a training_jobs row to its end
SWEEP = "trainer.sweep"  # () -> None; fails training jobs whose worker stopped beating (beat)
AUTO_RETRAIN = "trainer.auto_retrain"  # () -> None; the automatic trigger (beat, off by default)

# Longer than the longest task: an unacknowledged message is redelivered after this long.
# Trainer tasks run for hours; their worker may raise it (it is per-connection).
VISIBILITY_TIMEOUT_S = 6 * 3600


def key_prefix(namespace: str) -> str:
    return f"{namespace}:"


def create_celery_app(redis_url: str, namespace: str = "wardrobe", main: str = "wardrobe",
                      log_level: str | None = None) -> Celery:
    """``log_level``: a worker's LOG_LEVEL setting, which then wins over its command line's ``-l``."""
    app = Celery(main, broker=redis_url, backend=redis_url, set_as_current=True)
    if log_level is not None:
        _follow_log_level(log_level)
    prefix = key_prefix(namespace)
    app.conf.update(
        task_routes=TASK_ROUTES,
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_queue="inference",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # the DB row is the result; only REHEDGE returns a value
        result_expires=600,
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S, "global_keyprefix": prefix},
        task_acks_late=True,  # every task here is idempotent: it re-reads the job row first
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
    )
    return app


def _follow_log_level(level: str) -> None:
    """Set the root logger to ``level`` once Celery has configured logging (from ``-l``)."""
    from celery.signals import after_setup_logger

    def set_level(logger, **_: object) -> None:  # noqa: ANN001 - Celery passes the root logger
        logger.setLevel(level)

    after_setup_logger.connect(set_level, weak=False)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth a retry (the database or Redis blinked); anything else fails the job once."""
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError
    from sqlalchemy.exc import InterfaceError, OperationalError

    return (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, KombuOperationalError)


# Bounded retries with exponential backoff and jitter, for transient errors only.
RETRY_POLICY = dict(retry_backoff=True, retry_backoff_max=30, retry_jitter=True, max_retries=5)
