"""Celery entry point of the hedger: ``celery -A services.hedger.worker worker -Q hedger -P solo``.

(``wardrobe up`` and the test fixtures start it through ``services.launcher``.)
"""

from __future__ import annotations

from services.hedger.config import get_settings
from shared.celery_app import create_celery_app
from shared.heartbeat import install_heartbeat
from shared.logs import install_task_context
from shared.tracing import install_task_tracing
from shared.metrics import install_worker_metrics

settings = get_settings()
app = create_celery_app(settings.redis_url, settings.redis_namespace, main="hedger", queue="hedger",
                        log_level=settings.log_level)
install_heartbeat(app, settings.redis_url, settings.redis_namespace, "hedger")
install_worker_metrics(app, "hedger", settings.metrics_port, settings.metrics_host)
install_task_context(settings.log_format, "hedger")  # request and job ids on every line (shared/logs.py)
install_task_tracing("hedger", settings.tracing_endpoint, settings.tracing_sample_ratio)  # off unless set

import services.hedger.tasks  # noqa: E402,F401 - registers the hedger.* tasks on `app`

app.conf.worker_pool = "solo" if settings.concurrency == 1 else "threads"
app.conf.worker_concurrency = settings.concurrency
