"""The training-job runner: the one place a queued training job becomes a model version.

The Celery task ``trainer.run_job`` calls :func:`run_training_job` with a job id. The runner

    1. claims the job (``shared.training_jobs.claim``: queued → running; one job at a time),
    2. starts a heartbeat thread (liveness, cancel requests, the log tail) and calls the job's
       *mode function* with a :class:`JobContext`,
    3. publishes the candidate directory the mode returns into the model store and registers it,
    4. asks the promotion gate (unless the job says ``promote: never|always``), activates the
       candidate when it passes, and stores metrics, candidate and decision on the row.

A mode function is plain Python, tested without Celery:

    def run_quick(ctx: JobContext) -> JobOutcome: ...

It reports with ``ctx.progress(stage, fraction_of_the_whole_job, message)``, calls
``ctx.check_cancelled()`` between steps (raises :class:`JobCancelled`), writes its candidate
version (model.onnx + card.json) under ``ctx.work_dir`` and returns it in the outcome. Modes and
the gate are looked up by name in :data:`MODES` / :data:`GATE` so each lives in its own module.
"""

from __future__ import annotations

import collections
import importlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from services.trainer.config import TrainerSettings, get_settings
from shared import registry
from shared import training_jobs as tj
from shared.db import session_scope
from shared.model_store import ModelStore, open_model_store
from shared.schemas import GateDecision, TrainingJobCreate

__all__ = ["JobContext", "JobOutcome", "JobCancelled", "ModeUnavailable", "MODES", "GATE", "run_training_job",
           "run_full", "resolve"]

log = logging.getLogger(__name__)

# mode name -> "module:function" taking a JobContext and returning a JobOutcome
MODES: dict[str, str] = {
    "full": "services.trainer.modes:run_full",  # d2: the recipe with the feedback photos added
    "quick": "services.trainer.modes:run_quick",
    "recalibrate": "services.trainer.recalibrate:run_recalibrate",
}
# "module:function" (ctx, candidate_dir) -> GateDecision
GATE = "services.trainer.gate:decide"


class JobCancelled(Exception):
    """Raised by ``ctx.check_cancelled()`` once a cancel was asked: the job ends ``cancelled``."""


class ModeUnavailable(RuntimeError):
    """The mode's (or the gate's) module is not installed."""


def resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if exc.name and module.startswith(exc.name):  # the module itself is missing, not its imports
            raise ModeUnavailable(f"{target} is not available in this trainer") from exc
        raise


@dataclass
class JobOutcome:
    """What a mode function hands back."""

    candidate_dir: Path | None  # a finished version directory to publish, or None (nothing to promote)
    metrics: dict[str, Any] = field(default_factory=dict)
    gate: GateDecision | None = None  # set by a mode that gates itself; else the runner asks GATE


@dataclass
class JobContext:
    """Everything a mode function needs; it never touches Celery or the job row."""

    job_id: str
    request: TrainingJobCreate  # mode, version, promote, tolerance, recipe
    settings: TrainerSettings
    store: ModelStore
    work_dir: Path  # scratch space of this job (removed at the end)
    progress: Callable[[str, float, str | None], None]
    cancelled: Callable[[], bool]

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url

    @property
    def version(self) -> str:
        """The candidate's version name: the requested one or ``<UTC time>-<mode>``."""
        return self.request.version or f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{self.request.mode}"

    @property
    def tolerance(self) -> float:
        return self.settings.gate_tolerance if self.request.tolerance is None else self.request.tolerance

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled("cancelled on request")

    def active_model(self) -> tuple[str, Path] | None:
        """(version, local directory) of the version serving now, to start from or compare with."""
        with session_scope(self.database_url) as session:
            row = registry.active_version(session)
            found = (row.version, row.key) if row else None
        return (found[0], self.store.fetch(found[1])) if found else None


# --- the simplest mode: the model recipe on the dataset (d2 adds the feedback photos) ------------------
def run_full(ctx: JobContext) -> JobOutcome:
    """``full``: ``services.trainer.train.train`` with the job's recipe on the trainer's dataset."""
    from shared.recipe import Recipe
    from services.trainer.train import train
    from shared.taxonomy import load_taxonomy

    if ctx.settings.dataset_dir is None:
        raise ValueError("the trainer has no DATASET_DIR: a full retrain needs the training photos")
    recipe = Recipe.from_overrides(ctx.request.recipe, preset=ctx.request.recipe_preset)
    ctx.progress("training", 0.02, f"full retrain, recipe preset {ctx.request.recipe_preset!r}")
    result = train(Path(ctx.settings.dataset_dir), ctx.work_dir, load_taxonomy(), recipe, version=ctx.version)
    ctx.check_cancelled()
    ctx.progress("trained", 0.9, f"trained {result.card.version} in {result.seconds:.0f} s")
    metrics = {k: v for k, v in result.card.metrics.items() if k != "history"}
    return JobOutcome(result.model_dir, {"train_seconds": round(result.seconds, 1), **metrics})


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
    try:
        decision = resolve(GATE)(ctx, outcome.candidate_dir)
    except ModeUnavailable:
        decision = GateDecision(promote=False, reason="no promotion gate is installed in this trainer")
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
                outcome = resolve(MODES[request.mode])(ctx)
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

