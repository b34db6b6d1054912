"""The base of every task that moves a classification job along (``inference.classify``,
``hedger.hedge``): one failure path and one way to stop a chain.

A task gives up in one of two ways, and both end the same: the job row is marked failed with
a readable reason and a completion event is published (so a waiting gateway answers at once).

* Bad input it recognises (an unreadable photo, no active model): :meth:`JobTask.fail` records
  the reason and stops the chain, so no later task of it runs for a job that is over.
* Anything else (an unexpected error): Celery calls :meth:`JobTask.on_failure`, which fails the
  job with ``failure_code``. Retries of a transient error exhausted leave the job as it is, for
  the sweeper to send again (``shared.celery_app.leaves_job_to_sweeper``).

:meth:`JobTask.stop_chain` alone ends the chain without touching the job (a redelivered task
finding the job finished). Each service's task class only says which settings it reads.

A message that finds its job in a state it does not expect, or that does not validate, is dropped
and never fails the job: anyone able to write to the broker could otherwise fail jobs at will.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Task
from pydantic import ValidationError

from shared import jobs
from shared.celery_app import leaves_job_to_sweeper
from shared.config import CommonSettings
from shared.db import session_scope
from shared.events import EventPublisher
from shared.metrics import JOB_FAILURES

__all__ = ["JobTask", "publisher"]

log = logging.getLogger(__name__)


@lru_cache
def publisher(redis_url: str, namespace: str) -> EventPublisher:
    """One completion-event publisher per process (its Redis client is created on first use)."""
    return EventPublisher(redis_url, namespace)


class JobTask(Task):
    """A Celery task whose first argument is a payload with the ``job_id`` it works on."""

    abstract = True
    failure_code = "task_failed"  # error code of a job this task gave up on (on_failure)

    def settings(self) -> CommonSettings:
        """The service's settings (its ``config.get_settings()``): database, Redis, namespace."""
        raise NotImplementedError

    def publisher(self) -> EventPublisher:
        s = self.settings()
        return publisher(s.redis_url or "", s.redis_namespace)

    def stop_chain(self) -> None:
        """No further task of this chain runs (``chain(classify, hedge)`` ends here)."""
        self.request.chain = None

    def fail(self, job_id: str, code: str, message: str) -> None:
        """Fail the job with its reason, tell the waiters, and stop the chain."""
        with session_scope(self.settings().resolved_database_url) as session:
            jobs.mark_failed(session, job_id, code, message)
        JOB_FAILURES.labels(stage=self.name.split(".", 1)[0], code=code).inc()
        self.publisher().job_finished(job_id)
        self.stop_chain()
        log.info("job %s failed: %s: %s", job_id, code, message)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: ANN001 - Celery's signature
        payload: Any = args[0] if args else kwargs.get("payload")
        if not isinstance(payload, dict) or "job_id" not in payload:
            return
        if isinstance(exc, ValidationError):  # a malformed message is not its job's fault: dropped
            log.warning("%s: a malformed message for job %s dropped: %s", self.name, payload["job_id"], exc)
            return
        if leaves_job_to_sweeper(exc):
            log.warning("job %s: %s gave up on %s: %s; left to the sweeper", payload["job_id"], self.name,
                        type(exc).__name__, exc)
            return
        try:
            self.fail(payload["job_id"], self.failure_code, f"{self.failure_code.replace('_', ' ')}: "
                      f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - never let bookkeeping kill the worker
            log.exception("could not mark job %s failed", payload["job_id"])
