"""Sending a classification job to the workers, by task name: one implementation for the gateway
(a new job) and the sweeper (a job whose message was lost), so both send exactly the same thing."""

from __future__ import annotations

from celery import Celery, chain

from shared.celery_app import CLASSIFY, HEDGE
from shared.schemas import HedgeTaskIn, InferenceTaskIn

__all__ = ["send_classification", "send_hedge"]


def send_classification(celery: Celery, job_id: str) -> None:
    """inference.classify → hedger.hedge for a committed job."""
    payload = InferenceTaskIn(job_id=job_id).model_dump()
    chain(celery.signature(CLASSIFY, args=(payload,)), celery.signature(HEDGE)).apply_async()


def send_hedge(celery: Celery, job_id: str) -> None:
    """hedger.hedge alone, for a job whose leaf probabilities are stored but not yet hedged."""
    celery.send_task(HEDGE, args=(HedgeTaskIn(job_id=job_id).model_dump(),))
