"""Sending work to the workers, by task name (the gateway imports no worker code)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from services.gateway.errors import QueueUnavailable, RehedgeFailed, RehedgeTimeout
from services.gateway.notifier import Notifier, wait_event
from shared.celery_app import REHEDGE, RUN_JOB
from shared.dispatch import send_classification
from shared.schemas import ClassificationResult, RehedgeTaskIn, TrainingJobTaskIn


class JobQueue:
    def __init__(self, celery: Celery, redis: aioredis.Redis, notifier: Notifier, poll_s: float = 0.5) -> None:
        self.celery, self.redis, self.notifier, self.poll_s = celery, redis, notifier, poll_s

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

    async def rehedge(self, job_id: str, accuracy: float, timeout_s: float) -> ClassificationResult:
        """Run ``hedger.rehedge`` and await its result from the result backend, without a thread."""
        task_id = str(uuid.uuid4())
        key = self.celery.backend.get_key_for_task(task_id).decode()  # Redis backend publishes here too
        payload = RehedgeTaskIn(job_id=job_id, accuracy=accuracy).model_dump()
        deadline = time.monotonic() + timeout_s
        async with self.notifier.watch(key, channel=True) as event:
            try:
                await run_in_threadpool(
                    self.celery.send_task, REHEDGE, args=(payload,), task_id=task_id, ignore_result=False
                )
            except Exception as exc:  # noqa: BLE001
                raise QueueUnavailable(f"the job queue is unavailable: {exc}") from exc
            while True:
                raw = await self.redis.get(key)
                if raw is not None:
                    meta = json.loads(raw)
                    if meta.get("status") == "SUCCESS":
                        return ClassificationResult.model_validate(meta["result"])
                    if meta.get("status") in ("FAILURE", "REVOKED"):
                        info = meta.get("result") or {}
                        detail = info.get("exc_message", info) if isinstance(info, dict) else info
                        if isinstance(detail, (list, tuple)):
                            detail = "; ".join(map(str, detail))
                        raise RehedgeFailed(f"re-hedging failed: {detail}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RehedgeTimeout(f"the hedger did not answer within {timeout_s:g} s")
                await wait_event(event, min(remaining, self.poll_s))
                await asyncio.sleep(0)
