"""Celery wiring of the hedger: ``hedger.hedge``, chained after ``inference.classify``.

The hedging itself is the library's (``shared.hedging``): here we only read the job, take the
Hedger of its model version (built once per process, ``shared.model_hedgers``), and store the
answer. Re-hedging a finished job for another target is answered by the gateway with the same
library and never comes through this queue.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from celery import shared_task

from services.hedger import metrics
from services.hedger.config import HedgerSettings, get_settings
from shared import jobs
from shared.celery_app import HEDGE, RETRY_POLICY, transient_errors
from shared.db import session_scope
from shared.metrics import set_model_version
from shared.model_hedgers import ModelHedgers
from shared.schemas import HedgeTaskIn
from shared.tables import JobStatus
from shared.taxonomy import load_taxonomy
from shared.tasks import JobTask

log = logging.getLogger(__name__)


@lru_cache
def hedgers() -> ModelHedgers:
    """Per-process: the taxonomy, and each model version's Hedger once it is first needed."""
    return ModelHedgers(load_taxonomy(get_settings().taxonomy_path))


class HedgerTask(JobTask):
    failure_code = "hedging_failed"

    def settings(self) -> HedgerSettings:
        return get_settings()


@shared_task(name=HEDGE, bind=True, base=HedgerTask, acks_late=True,
             autoretry_for=transient_errors(), **RETRY_POLICY)
def hedge_task(self: HedgerTask, payload: dict) -> None:
    msg = HedgeTaskIn.model_validate(payload)
    s = get_settings()
    with session_scope(s.resolved_database_url) as session:
        job = jobs.get_job(session, msg.job_id)
        if job is None or job.status is not JobStatus.running:
            log.info("job %s: nothing to hedge (status %s)", msg.job_id, job.status.value if job else "unknown")
            return
        if job.leaf_probs is None or job.model_version is None:
            # Running but not inferred yet: inference sends the hedge when it has the probabilities.
            # A hedge now is a forged or stray message; failing the job for it would let anyone who
            # can write to the broker fail running jobs (issue [G2]), so the message is dropped.
            log.warning("job %s: a hedge message before its inference; dropped", msg.job_id)
            return
        t0 = time.perf_counter()
        hedger = hedgers().load(session, job.model_version)
        result = hedger.classify(job.leaf_probs, job.accuracy_target, s.hedge_method, s.top_k)
        hedging_ms = (time.perf_counter() - t0) * 1000.0
        jobs.mark_done(session, job, result.model_dump(mode="json"), {"hedging_ms": round(hedging_ms, 3)})
        version, method = job.model_version, result.answer.method
    set_model_version("hedger", version)
    log.info("job %s: hedged to %s (%s, target %s)", msg.job_id, result.answer.node.name, method,
             result.answer.accuracy_target)
    metrics.HEDGE_SECONDS.labels(model_version=version, method=method).observe(hedging_ms / 1000.0)
    metrics.RESULTS.labels(model_version=version, method=method,
                           level="inner" if result.answer.alternatives else "leaf").inc()
    self.publisher().job_finished(msg.job_id)
