"""Celery entry point of the sweeper: ``celery -A services.sweeper.worker worker -Q sweeper -B``.

Beat (``-B``, one such process per deployment) sends ``sweeper.sweep`` every
``SWEEP_INTERVAL_S``; this worker runs it on its own queue, so a sweep never waits behind another
stage's tasks (a training run holds the trainer's solo worker for hours). A sweep message expires
after one interval: after an outage the sweeps do not pile up, the next one does the work.
"""

from __future__ import annotations

import logging

from services.sweeper.config import get_settings
from shared.celery_app import RETENTION, SWEEP, create_celery_app
from shared.heartbeat import install_heartbeat
from shared.logs import install_task_context
from shared.tracing import install_task_tracing
from shared.metrics import install_worker_metrics

settings = get_settings()
app = create_celery_app(settings.redis_url, settings.redis_namespace, main="sweeper", queue="sweeper",
                        log_level=settings.log_level)
# A sweep every few seconds: Celery's per-task "received"/"succeeded" lines would drown the log;
# the sweeps log what they do (a job sent again or failed) themselves.
for name in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(name).setLevel(logging.WARNING)
install_heartbeat(app, settings.redis_url, settings.redis_namespace, "sweeper")
install_worker_metrics(app, "sweeper", settings.metrics_port, settings.metrics_host)
install_task_context(settings.log_format, "sweeper")  # request and job ids on every line (shared/logs.py)
install_task_tracing("sweeper", settings.tracing_endpoint, settings.tracing_sample_ratio)  # off unless set

import services.sweeper.tasks  # noqa: E402,F401 - registers the sweeper.* tasks on `app`

app.conf.worker_pool = "solo"
app.conf.worker_concurrency = 1
app.conf.beat_schedule = {
    "sweep": {"task": SWEEP, "schedule": settings.sweep_interval_s,
              "options": {"expires": settings.sweep_interval_s}},
    "retention": {"task": RETENTION, "schedule": settings.retention_interval_s,
                  "options": {"expires": settings.retention_interval_s}},
}
settings.data_dir.mkdir(parents=True, exist_ok=True)
app.conf.beat_schedule_filename = str(settings.data_dir / "celerybeat-schedule")
