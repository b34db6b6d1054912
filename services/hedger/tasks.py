"""Celery wiring of the hedger: ``hedger.hedge`` (chained after inference) and ``hedger.rehedge``.

The hedging itself is a pure function in ``shared.hedging.hedging`` (imported lazily); here we
only read the job, pick the model version's calibration, call it and store the answer.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import lru_cache
from typing import Any

import numpy as np
from celery import Task, shared_task

from services.hedger.config import get_settings
from shared import jobs, registry
from shared.celery_app import HEDGE, REHEDGE, RETRY_POLICY, leaves_job_to_sweeper, transient_errors
from shared.db import session_scope
from shared.events import EventPublisher
from shared.schemas import ClassificationResult, HedgeTaskIn, RehedgeTaskIn, ScoredNode
from shared.tables import JobStatus
from shared.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)


class HedgingError(RuntimeError):
    """The job cannot be hedged (no probabilities, unknown leaves); not worth a retry."""


# --- per-process resources, created on first use -------------------------------------------
@lru_cache
def taxonomy() -> Taxonomy:
    return load_taxonomy(get_settings().taxonomy_path)


@lru_cache
def publisher() -> EventPublisher:
    s = get_settings()
    return EventPublisher(s.redis_url, s.redis_namespace)


_calibrations: dict[str, dict[str, Any]] = {}
_calibrations_lock = threading.Lock()


def calibration_for(version: str | None) -> dict[str, Any]:
    """The hedger calibration of a model version (cards are immutable per version: cached)."""
    if version is None:
        return {}
    with _calibrations_lock:
        if version in _calibrations:
            return _calibrations[version]
    with session_scope(get_settings().resolved_database_url) as session:
        row = registry.get_version(session, version)
        calibration = dict((row.card or {}).get("calibration") or {}) if row else {}
    with _calibrations_lock:
        _calibrations[version] = calibration
    return calibration


# --- plain functions (tested directly) ------------------------------------------------------
def leaf_vector(leaf_probs: dict[str, float], tax: Taxonomy) -> np.ndarray:
    """Leaf probabilities in the taxonomy's leaf order (leaves the model lacks get 0)."""
    unknown = set(leaf_probs) - set(tax.leaves)
    if unknown:
        raise HedgingError(f"the model's classes {sorted(unknown)} are not leaves of taxonomy {tax.version}")
    vec = np.array([float(leaf_probs.get(leaf, 0.0)) for leaf in tax.leaves], dtype=np.float64)
    total = vec.sum()
    if not np.isfinite(total) or total <= 0:
        raise HedgingError("the leaf probabilities are not a distribution")
    return vec / total


def top_predictions(vec: np.ndarray, tax: Taxonomy, k: int) -> list[ScoredNode]:
    order = np.argsort(-vec, kind="stable")[:k]
    out = []
    for i in order:
        node = tax.nodes[tax.leaves[i]]
        out.append(ScoredNode(name=node.name, display=node.display, icon=node.icon,
                              probability=float(min(1.0, max(0.0, vec[i])))))
    return out


def build_result(
    leaf_probs: dict[str, float], tax: Taxonomy, calibration: dict[str, Any], accuracy: float,
    method: str | None = None, top_k: int = 5,
) -> ClassificationResult:
    from shared.hedging.hedging import hedge  # written alongside; imported lazily

    vec = leaf_vector(leaf_probs, tax)
    answer = hedge(vec, tax, calibration, accuracy, method=method)
    return ClassificationResult(answer=answer, top_predictions=top_predictions(vec, tax, top_k))


# --- tasks ----------------------------------------------------------------------------------
class HedgerTask(Task):
    """Marks the job failed when a task gives up (non-transient error or retries exhausted)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: ANN001 - Celery's signature
        payload = args[0] if args else kwargs.get("payload")
        if self.name != HEDGE or not isinstance(payload, dict) or "job_id" not in payload:
            return
        if leaves_job_to_sweeper(exc):
            log.warning("job %s: hedging gave up on %s: %s; left to the sweeper", payload["job_id"],
                        type(exc).__name__, exc)
            return
        try:
            with session_scope(get_settings().resolved_database_url) as session:
                jobs.mark_failed(session, payload["job_id"], "hedging_failed", f"hedging failed: {exc}")
            publisher().job_finished(payload["job_id"])
        except Exception:  # noqa: BLE001 - never let bookkeeping kill the worker
            log.exception("could not mark job %s failed", payload.get("job_id"))


@shared_task(name=HEDGE, bind=True, base=HedgerTask, acks_late=True,
             autoretry_for=transient_errors(), **RETRY_POLICY)
def hedge_task(self: Task, payload: dict) -> None:
    msg = HedgeTaskIn.model_validate(payload)
    s = get_settings()
    with session_scope(s.resolved_database_url) as session:
        job = jobs.get_job(session, msg.job_id)
        if job is None or job.status is not JobStatus.running:
            log.info("job %s: nothing to hedge (status %s)", msg.job_id, job.status.value if job else "unknown")
            return
        if job.leaf_probs is None:
            raise HedgingError("the job has no leaf probabilities")
        t0 = time.perf_counter()
        result = build_result(job.leaf_probs, taxonomy(), calibration_for(job.model_version),
                              job.accuracy_target, s.hedge_method, s.top_k)
        hedging_ms = (time.perf_counter() - t0) * 1000.0
        jobs.mark_done(session, job, result.model_dump(mode="json"), {"hedging_ms": round(hedging_ms, 3)})
    publisher().job_finished(msg.job_id)


@shared_task(name=REHEDGE, bind=True, ignore_result=False, acks_late=True,
             autoretry_for=transient_errors(), max_retries=2, retry_backoff=True)
def rehedge_task(self: Task, payload: dict) -> dict:
    """The stored leaf probabilities hedged for another accuracy target; nothing is written."""
    msg = RehedgeTaskIn.model_validate(payload)
    s = get_settings()
    with session_scope(s.resolved_database_url) as session:
        job = jobs.get_job(session, msg.job_id)
        if job is None or job.leaf_probs is None:
            raise HedgingError(f"job {msg.job_id} has no leaf probabilities to re-hedge")
        leaf_probs, version = job.leaf_probs, job.model_version
    result = build_result(leaf_probs, taxonomy(), calibration_for(version), msg.accuracy, s.hedge_method, s.top_k)
    return result.model_dump(mode="json")
