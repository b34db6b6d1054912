"""The ``inference.classify`` task: photo → leaf probabilities, then on to ``hedger.hedge``.

The gateway sends ``chain(inference.classify, hedger.hedge)``; this task returns the hedger's
payload, or stops the chain when the job failed or needs nothing more. A bad photo fails its
job with a readable error and never the worker.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from celery import shared_task

from services.inference.batching import MicroBatcher
from services.inference import metrics
from services.inference.config import InferenceSettings, get_settings
from services.inference.runtime import ModelTracker, NoActiveModel
from shared import jobs
from shared.celery_app import CLASSIFY, RETRY_POLICY, transient_errors
from shared.db import session_scope
from shared.metrics import QUEUE_AGE, set_model_version
from shared.photos import DecodeBudget, PhotoError, decode_photo
from shared.preprocessing import decode_min_side, preprocess
from shared.schemas import HedgeTaskIn, InferenceTaskIn
from shared.model_contract import load_model
from shared.model_store import ModelStore, open_model_store
from shared.storage import PhotoMissing, PhotoStore
from shared.tables import JobStatus
from shared.tasks import JobTask

log = logging.getLogger(__name__)


# --- per-process resources, created on first use (never at import) --------------------------
@lru_cache
def store() -> PhotoStore:
    return PhotoStore(get_settings().resolved_photo_dir)


@lru_cache
def model_store() -> ModelStore:
    return open_model_store(get_settings().resolved_model_store)


@lru_cache
def tracker() -> ModelTracker:
    s = get_settings()
    return ModelTracker(
        s.resolved_database_url, s.model_check_interval_s,
        loader=lambda key: load_model(model_store().fetch(key), s.prefer_gpu, s.ort_intra_op_threads,
                                      s.ort_allow_spinning, s.ort_cpu_mem_arena),
    )


@lru_cache
def decode_budget() -> DecodeBudget:
    return DecodeBudget(get_settings().decode_budget_bytes)


@lru_cache
def batcher() -> MicroBatcher:
    s = get_settings()
    return MicroBatcher(s.batch_max_size, s.batch_max_delay_ms / 1000.0, on_batch=metrics.observe_batch)


class InferenceTask(JobTask):
    failure_code = "inference_failed"

    def settings(self) -> InferenceSettings:
        return get_settings()


@shared_task(name=CLASSIFY, bind=True, base=InferenceTask, acks_late=True,
             autoretry_for=transient_errors(), **RETRY_POLICY)
def classify(self: InferenceTask, payload: dict) -> dict | None:
    msg = InferenceTaskIn.model_validate(payload)
    s = get_settings()
    with session_scope(s.resolved_database_url) as session:
        job = jobs.claim_for_inference(session, msg.job_id)
        if job is None:  # finished, unknown, or inferred before a redelivery
            existing = jobs.get_job(session, msg.job_id)
            if existing is not None and existing.status is JobStatus.running and existing.leaf_probs is not None:
                log.info("job %s: inferred before, hedging still owed", msg.job_id)
                return HedgeTaskIn(job_id=msg.job_id).model_dump()
            log.info("job %s: nothing to infer (%s), chain stopped", msg.job_id,
                     existing.status.value if existing else "unknown job")
            self.stop_chain()
            return None
        photo_key = job.photo_key
        if "queue_wait_ms" in job.timings:
            QUEUE_AGE.labels(stage="inference").observe(job.timings["queue_wait_ms"] / 1000.0)

    try:
        with batcher().slot() as slot:
            t0 = time.perf_counter()
            model = tracker().current()
            image = decode_photo(store().get(photo_key), s.max_photo_bytes, s.max_photo_pixels,
                                 min_side=decode_min_side(model.card.preprocess), budget=decode_budget())
            x = preprocess(image, model.card.preprocess)  # (3, S, S) float32
            decode_ms = (time.perf_counter() - t0) * 1000.0
            future = slot.submit(model, x)
        out = future.result(timeout=s.batch_timeout_s)
        photo_s = time.perf_counter() - t0
    except PhotoError as exc:
        self.fail(msg.job_id, exc.code, str(exc))
        return None
    except PhotoMissing as exc:
        self.fail(msg.job_id, "photo_missing", str(exc))
        return None
    except NoActiveModel as exc:
        self.fail(msg.job_id, "no_active_model", str(exc))
        return None

    set_model_version("inference", model.version)
    metrics.PHOTOS.labels(model_version=model.version).inc()
    metrics.PHOTO_SECONDS.labels(model_version=model.version).observe(photo_s)
    timings = {"decode_preprocess_ms": round(decode_ms, 3), "inference_ms": round(out.inference_ms, 3),
               "batch_size": out.batch_size}
    with session_scope(s.resolved_database_url) as session:
        job = jobs.get_job(session, msg.job_id)
        if job is None or job.status.finished:
            self.stop_chain()
            return None
        # the network's output as it is, in the card's class order; the hedger normalises it
        jobs.record_inference(session, job, model.version, out.probs.tolist(), timings)
    log.info("job %s: inferred by %s in a batch of %d", msg.job_id, model.version, out.batch_size)
    return HedgeTaskIn(job_id=msg.job_id).model_dump()
