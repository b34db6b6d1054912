"""The training-job runner: the one place a queued training job becomes a model version.

The Celery task ``trainer.run_job`` calls :func:`run_training_job` with a job id. The runner

    1. claims the job (``shared.training_jobs.claim``: queued → running; one job at a time),
    2. starts a heartbeat thread (liveness, cancel requests, the log tail) and calls the job's
       *mode function* (:data:`MODES`) with a :class:`~services.trainer.jobs.context.JobContext`,
    3. publishes the candidate directory the mode returns into the model store and registers it,
    4. asks the promotion gate (unless the job says ``promote: never|always``), activates the
       candidate when it passes, and stores metrics, candidate and decision on the row.

A mode reports with ``ctx.progress(stage, fraction_of_the_whole_job, message)``, calls
``ctx.check_cancelled()`` between steps (raises ``JobCancelled``), writes its candidate version
(model.onnx + card.json) under ``ctx.work_dir`` and returns it in the outcome.
"""

from __future__ import annotations

import collections
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from services.trainer.config import TrainerSettings, get_settings
from services.trainer.jobs import gate, modes, recalibrate
from services.trainer.jobs.context import JobCancelled, JobContext, JobOutcome, Mode
from shared import registry
from shared import training_jobs as tj
from shared.db import session_scope
from shared.model_store import open_model_store
from shared.schemas import GateDecision, TrainingJobCreate

__all__ = ["MODES", "GATE", "ModeUnavailable", "run_training_job"]

log = logging.getLogger(__name__)

MODES: dict[str, Mode] = {
    "quick": modes.run_quick,  # every member's trainable part refit on cached fronts + feedback
    "full": modes.run_full,  # the whole recipe again, feedback photos added
    "recalibrate": recalibrate.run_recalibrate,  # the active version's λ tables refit on feedback
}
# (ctx, candidate_dir) -> decision; an attribute so a test can put a stub gate in
GATE: Callable[[JobContext, Path], GateDecision] = gate.decide


class ModeUnavailable(RuntimeError):
    """The job names a mode this trainer does not run."""


# --- the runner --------------------------------------------------------------------------------
class _LogTail(logging.Handler):
    """The job's recent log lines (its own messages and the trainer's INFO logs), for the row."""

    def __init__(self, lines: int = tj.LOG_TAIL_LINES) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("services.trainer", "shared")):
            self.lines.append(self.format(record))

    def snapshot(self) -> list[str]:
        return list(self.lines)


class _Reporter:
    """Progress and liveness of one running job: the mode's ``progress`` calls update memory; a
    thread writes them with a heartbeat every interval (and at once on a stage change), and reads
    back whether a cancel was asked."""

    def __init__(self, job_id: str, url: str, interval_s: float, tail: _LogTail) -> None:
        self.job_id, self.url, self.interval_s, self.tail = job_id, url, interval_s, tail
        self.stage, self.fraction = "starting", 0.0
        self.cancel_requested = False
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def progress(self, stage: str, fraction: float, message: str | None = None) -> None:
        if message:
            log.info("[%s %.0f%%] %s", stage, 100 * fraction, message)
        changed = stage != self.stage
        self.stage, self.fraction = stage, max(self.fraction, min(1.0, float(fraction)))
        if changed:
            self._dirty.set()

    def cancelled(self) -> bool:
        return self.cancel_requested

    def flush(self) -> None:
        try:
            with session_scope(self.url) as session:
                self.cancel_requested = tj.beat(session, self.job_id, stage=self.stage, progress=self.fraction,
                                                log_tail=self.tail.snapshot()) or self.cancel_requested
        except Exception as exc:  # noqa: BLE001 - a DB blip must not kill the training; the next beat retries
            log.warning("heartbeat of training job %s failed: %s", self.job_id, exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.flush()
            self._dirty.wait(self.interval_s)
            self._dirty.clear()

    def __enter__(self) -> "_Reporter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._dirty.set()
        self._thread.join(10)


def _gate(ctx: JobContext, outcome: JobOutcome, candidate: str) -> GateDecision:
    policy = ctx.request.promote
    if outcome.gate is not None and policy == "gate":
        return outcome.gate
    if policy == "never":
        return GateDecision(promote=False, reason="the job asked not to promote (promote: never)")
    decision = GATE(ctx, outcome.candidate_dir)
    if policy == "always":
        decision = decision.model_copy(update={"promote": True,
                                               "reason": f"promoted without the gate (promote: always); "
                                                         f"the gate said: {decision.reason}"})
    log.info("gate on %s: %s (%s)", candidate, "promote" if decision.promote else "keep", decision.reason)
    return decision


def run_training_job(job_id: str, worker: str, settings: TrainerSettings | None = None) -> str | None:
    """Run one queued job to its end; returns its final status (None if it was not ours to run).
    Raises ``training_jobs.SlotBusy`` while another job runs (the task retries later)."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    with session_scope(url) as session:
        tj.fail_stale(session, settings.training_heartbeat_timeout_s)  # a dead job must not hold the slot
    with session_scope(url) as session:
        job = tj.claim(session, job_id, worker)
        if job is None:
            log.info("training job %s is not queued (finished, cancelled or taken); skipping", job_id)
            return None
        request = TrainingJobCreate.model_validate({"mode": job.mode, **job.options})
    tail = _LogTail()
    root = logging.getLogger()
    root.addHandler(tail)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    work_dir = settings.resolved_work_dir / "jobs" / job_id
    work_dir.mkdir(parents=True, exist_ok=True)
    store = open_model_store(settings.resolved_model_store)
    start = time.monotonic()
    try:
        with _Reporter(job_id, url, settings.heartbeat_interval_s, tail) as reporter:
            ctx = JobContext(job_id, request, settings, store, work_dir, reporter.progress, reporter.cancelled)
            try:
                if request.mode not in MODES:
                    raise ModeUnavailable(f"this trainer runs no {request.mode!r} jobs (modes: {', '.join(MODES)})")
                outcome = MODES[request.mode](ctx)
                ctx.check_cancelled()
                candidate = gate = None
                if outcome.candidate_dir is not None:
                    reporter.progress("publishing", max(reporter.fraction, 0.9), "publishing the candidate")
                    with session_scope(url) as session:
                        candidate = registry.publish(session, store, outcome.candidate_dir).version
                    reporter.progress("gate", max(reporter.fraction, 0.93), f"scoring candidate {candidate}")
                    gate = _gate(ctx, outcome, candidate)
                    ctx.check_cancelled()
                metrics = {**outcome.metrics, "seconds": round(time.monotonic() - start, 1),
                           "promoted": bool(gate and gate.promote)}
                with session_scope(url) as session:
                    row = tj.get(session, job_id, lock=True)
                    if row.status is not tj.S.running:
                        return None  # swept as dead meanwhile (a long stall): its verdict stands
                    if gate is not None and gate.promote:
                        registry.activate(session, candidate, kind="promotion", caller_id=row.requested_by,
                                          reason=f"training job {job_id}: {gate.reason}")
                        log.info("promoted %s", candidate)
                    tj.finish(session, job_id, metrics=metrics, candidate_version=candidate,
                              gate=gate.model_dump() if gate else None, log_tail=tail.snapshot())
                return "done"
            except JobCancelled:
                log.info("training job %s cancelled", job_id)
                with session_scope(url) as session:
                    tj.mark_cancelled(session, job_id, log_tail=tail.snapshot())
                return "cancelled"
    except Exception as exc:  # noqa: BLE001 - any failure ends the job failed, with its reason
        log.exception("training job %s failed", job_id)
        code = "mode_unavailable" if isinstance(exc, ModeUnavailable) else "training_failed"
        with session_scope(url) as session:
            tj.fail(session, job_id, code, f"{type(exc).__name__}: {exc}", log_tail=tail.snapshot())
        return "failed"
    finally:
        root.removeHandler(tail)
        shutil.rmtree(work_dir, ignore_errors=True)

