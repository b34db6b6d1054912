"""What a job mode receives and returns: the typed contract between the runner and the modes.

A mode is a plain function ``(JobContext) -> JobOutcome`` (``jobs.modes``, ``jobs.recalibrate``),
tested without Celery. This module imports neither the runner nor the modes, so both import it
and the runner imports the modes: no circle, no lookup by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from services.trainer.config import TrainerSettings
from shared import registry
from shared.db import session_scope
from shared.model_store import ModelStore
from shared.schemas import GateDecision, TrainingJobCreate

__all__ = ["JobContext", "JobOutcome", "JobCancelled", "Mode"]


class JobCancelled(Exception):
    """Raised by ``ctx.check_cancelled()`` once a cancel was asked: the job ends ``cancelled``."""


@dataclass
class JobOutcome:
    """What a mode function hands back."""

    candidate_dir: Path | None  # a finished version directory to publish, or None (nothing to promote)
    metrics: dict[str, Any] = field(default_factory=dict)
    gate: GateDecision | None = None  # set by a mode that gates itself; else the runner asks the gate


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

    def version_dir(self, version: str) -> Path | None:
        """The local directory of a registered version (None when the registry has no such version)."""
        with session_scope(self.database_url) as session:
            row = registry.get_version(session, version)
            key = row.key if row else None
        return self.store.fetch(key) if key else None


# a job mode: the context in, the candidate (or nothing) out
Mode = Callable[[JobContext], JobOutcome]
