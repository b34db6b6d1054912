"""``sweeper.sweep`` (the sweeps of ``shared.sweeper``) and ``sweeper.retention`` (``shared.retention``), both
scheduled by beat (services/sweeper/worker.py)."""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from celery import shared_task

from services.sweeper import metrics
from services.sweeper.config import get_settings
from shared.celery_app import RETENTION, SWEEP
from shared.retention import expire
from shared.storage import PhotoStore
from shared.sweeper import SweepContext, run_sweeps
from shared.tables import utcnow
from shared.tasks import publisher

log = logging.getLogger(__name__)


@lru_cache
def heartbeat_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@shared_task(name=SWEEP, bind=True, ignore_result=True)
def sweep_task(self) -> dict:  # noqa: ANN001 - Celery's bound task
    s = get_settings()
    ctx = SweepContext(database_url=s.resolved_database_url, celery=self.app, policy=s.policy,
                       on_finished=publisher(s.redis_url, s.redis_namespace).job_finished)
    report = run_sweeps(ctx)
    metrics.count_sweep_report(report)
    if s.metrics_port:  # the deployment's gauges, only where someone scrapes them
        try:
            metrics.observe_deployment(ctx, heartbeat_client(s.redis_url), s.redis_namespace)
        except Exception as exc:  # noqa: BLE001 - the broker or database is down: the sweeps said so
            log.warning("deployment metrics not read: %s: %s", type(exc).__name__, exc)
    if any(isinstance(v, str) or any(v.values()) for v in report.values()):
        log.info("sweep: %s", report)
    return report


@shared_task(name=RETENTION, bind=True, ignore_result=True)
def retention_task(self) -> dict:  # noqa: ANN001 - Celery's bound task
    """Delete what outlived its retention (``shared.retention``); a long backlog drains over runs."""
    s = get_settings()
    counts = expire(s.resolved_database_url, PhotoStore(s.resolved_photo_dir), s.retention, utcnow())
    metrics.count_sweep_report({"retention": counts})
    if any(counts.values()):
        log.info("retention: %s", counts)
    return counts
