"""``sweeper.sweep``: runs every sweep of ``shared.sweeper`` (scheduled by beat, services/sweeper/worker.py)."""

from __future__ import annotations

import logging

from celery import shared_task

from services.sweeper.config import get_settings
from shared.celery_app import SWEEP
from shared.sweeper import SweepContext, run_sweeps
from shared.tasks import publisher

log = logging.getLogger(__name__)


@shared_task(name=SWEEP, bind=True, ignore_result=True)
def sweep_task(self) -> dict:  # noqa: ANN001 - Celery's bound task
    s = get_settings()
    ctx = SweepContext(database_url=s.resolved_database_url, celery=self.app, policy=s.policy,
                       on_finished=publisher(s.redis_url, s.redis_namespace).job_finished)
    report = run_sweeps(ctx)
    if any(isinstance(v, str) or any(v.values()) for v in report.values()):
        log.info("sweep: %s", report)
    return report
