"""Sending work to the workers, by task name (the gateway imports no worker code)."""

from __future__ import annotations

from celery import Celery
from starlette.concurrency import run_in_threadpool

from services.gateway.errors import QueueUnavailable
from shared.celery_app import RUN_JOB
from shared.dispatch import send_classification
from shared.schemas import TrainingJobTaskIn


class JobQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    async def enqueue_classification(self, job_id: str) -> None:
        """inference.classify → hedger.hedge for a committed job."""
        try:
            await run_in_threadpool(send_classification, self.celery, job_id)
        except Exception as exc:  # noqa: BLE001 - broker down: the caller fails the job
            raise QueueUnavailable(f"the job queue is unavailable: {exc}") from exc

    async def enqueue_training_job(self, job_id: str) -> None:
        """trainer.run_job for a committed training job (the row is the truth; the message a nudge)."""
        payload = TrainingJobTaskIn(job_id=job_id).model_dump()
        try:
            await run_in_threadpool(self.celery.send_task, RUN_JOB, args=(payload,))
        except Exception as exc:  # noqa: BLE001 - broker down: the caller fails the job
            raise QueueUnavailable(f"the job queue is unavailable: {exc}") from exc
