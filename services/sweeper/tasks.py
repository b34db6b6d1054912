"""``sweeper.sweep``: runs every sweep of ``shared.sweeper`` (scheduled by beat, services/sweeper/worker.py)."""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import shared_task

from services.sweeper.config import get_settings
from shared.celery_app import SWEEP
from shared.events import EventPublisher
from shared.sweeper import SweepContext, run_sweeps

log = logging.getLogger(__name__)


@lru_cache
def publisher() -> EventPublisher:
    s = get_settings()
    return EventPublisher(s.redis_url, s.redis_namespace)


@shared_task(name=SWEEP, bind=True, ignore_result=True)
def sweep_task(self) -> dict:  # noqa: ANN001 - Celery's bound task
    s = get_settings()
    ctx = SweepContext(database_url=s.resolved_database_url, celery=self.app, policy=s.policy,
                       on_finished=publisher().job_finished)
    report = run_sweeps(ctx)
    if any(isinstance(v, str) or any(v.values()) for v in report.values()):
        log.info("sweep: %s", report)
    return report
