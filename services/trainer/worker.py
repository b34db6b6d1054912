"""Celery entry point of the trainer: ``celery -A services.trainer.worker worker -Q trainer [-B]``.

One training at a time per worker (solo pool): a run uses every core it is given, and the
``training_jobs`` running slot keeps it to one job at a time across workers too. With ``-B`` the
worker also runs Celery beat: the automatic retrain trigger (off unless configured) and the
dead-job sweep (the sweeper service runs that sweep too, so it happens with no trainer alive).
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from services.trainer.config import get_settings
from shared.celery_app import AUTO_RETRAIN, TRAINING_SWEEP, create_celery_app
from shared.heartbeat import install_heartbeat
from shared.logs import install_task_context
from shared.metrics import install_worker_metrics
from shared.tracing import install_task_tracing

settings = get_settings()
if not settings.redis_url:
    raise SystemExit("the trainer worker needs REDIS_URL")
app = create_celery_app(settings.redis_url, settings.redis_namespace, main="trainer", queue="trainer",
                        log_level=settings.log_level)
install_heartbeat(app, settings.redis_url, settings.redis_namespace, "trainer")
install_worker_metrics(app, "trainer", settings.metrics_port, settings.metrics_host)
install_task_context(settings.log_format, "trainer")  # request and job ids on every line (shared/logs.py)
install_task_tracing("trainer", settings.tracing_endpoint, settings.tracing_sample_ratio)  # off unless set

import services.trainer.tasks  # noqa: E402,F401 - registers the trainer.* tasks on `app`

app.conf.worker_pool = "solo"
app.conf.worker_concurrency = 1
app.conf.beat_schedule = {
    "sweep-dead-training-jobs": {"task": TRAINING_SWEEP, "schedule": settings.sweep_interval_s},
}
if settings.auto_retrain_after_feedback or settings.auto_retrain_every_s:
    app.conf.beat_schedule["auto-retrain"] = {"task": AUTO_RETRAIN, "schedule": settings.auto_check_interval_s}

log = logging.getLogger(__name__)


@worker_ready.connect
def _sweep_at_start(sender=None, **_: object) -> None:  # noqa: ANN001 - Celery signal
    """A worker starting under a name that still has a running job died with it: fail that job now,
    and any other whose worker stopped beating, rather than leave it 'running' forever."""
    hostname = getattr(sender, "hostname", None)
    try:
        failed = services.trainer.tasks.sweep(dead_worker=hostname)
    except Exception as exc:  # noqa: BLE001 - the database may not be up yet; beat sweeps later
        log.warning("start-up sweep of training jobs failed: %s", exc)
        return
    if failed:
        log.warning("failed %d training job(s) left running by a dead worker: %s", len(failed), ", ".join(failed))
