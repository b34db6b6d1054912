"""Celery entry point of the trainer: ``celery -A services.trainer.worker worker -Q trainer``.

One training at a time per worker (solo pool): a run uses every core it is given.
"""

from __future__ import annotations

from services.trainer.config import get_settings
from shared.celery_app import create_celery_app

settings = get_settings()
if not settings.redis_url:
    raise SystemExit("the trainer worker needs REDIS_URL")
app = create_celery_app(settings.redis_url, settings.redis_namespace, main="trainer")

import services.trainer.tasks  # noqa: E402,F401 - registers the trainer.* tasks on `app`

app.conf.worker_pool = "solo"
app.conf.worker_concurrency = 1
