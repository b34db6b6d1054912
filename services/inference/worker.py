"""Celery entry point of the inference worker:
``celery -A services.inference.worker worker -Q inference -P threads -c <batch_max_size>``.

Threads, not processes: the task threads of one process feed one micro-batcher and share one
ONNX Runtime session. Prefetch (threads x multiplier) keeps the next batch's messages at hand.
"""

from __future__ import annotations

from celery.signals import worker_ready

from services.inference.config import get_settings
from shared.celery_app import create_celery_app
from shared.heartbeat import install_heartbeat
from shared.logs import install_task_context
from shared.tracing import install_task_tracing
from shared.metrics import install_worker_metrics
from shared.photos import return_freed_bitmaps_to_the_os

settings = get_settings()
return_freed_bitmaps_to_the_os()  # 16 task threads decode photos: no heap arena may hoard a bitmap
app = create_celery_app(settings.redis_url, settings.redis_namespace, main="inference", queue="inference",
                        log_level=settings.log_level)
install_heartbeat(app, settings.redis_url, settings.redis_namespace, "inference")
install_worker_metrics(app, "inference", settings.metrics_port, settings.metrics_host)
install_task_context(settings.log_format, "inference")  # request and job ids on every line (shared/logs.py)
install_task_tracing("inference", settings.tracing_endpoint, settings.tracing_sample_ratio)  # off unless set
if settings.metrics_port:
    from services.inference.gpu_metrics import register_gpu_metrics

    register_gpu_metrics()
app.conf.worker_prefetch_multiplier = settings.prefetch_multiplier

import services.inference.tasks  # noqa: E402,F401 - registers the inference.* tasks on `app`


@worker_ready.connect
def _wake_event_loop(sender=None, **_) -> None:  # noqa: ANN001
    """With the threads pool, acks sent from task threads wait for the consumer's event loop to
    wake up (celery/celery#6941); a short no-op timer bounds that delay."""
    if sender is not None and getattr(sender, "timer", None) is not None:
        sender.timer.call_repeatedly(0.05, lambda: None)

app.conf.worker_pool = "threads"
app.conf.worker_concurrency = settings.threads
