"""Following the registry's active model version without a restart.

One session per model version per process (``shared.model_contract.load_model``), created on
first use; ``ModelTracker.current()`` re-reads the active version from the database at most every
``check_interval_s`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared import registry
from shared.db import session_scope
from shared.model_contract import LoadedModel, load_model

__all__ = ["ModelTracker", "NoActiveModel"]

log = logging.getLogger(__name__)


class NoActiveModel(RuntimeError):
    """The registry has no active model version."""


class ModelTracker:
    """The model to use now: the registry's active version, re-checked every few seconds."""

    def __init__(self, database_url: str, check_interval_s: float = 2.0,
                 loader: Callable[[str], LoadedModel] | None = None) -> None:
        self.database_url, self.check_interval_s = database_url, check_interval_s
        self.loader = loader or load_model
        self._model: LoadedModel | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def _active(self) -> tuple[str, str] | None:
        """(version, store key) of the active row; ``loader`` turns the key into a loaded model."""
        with session_scope(self.database_url) as session:
            row = registry.active_version(session)
            return (row.version, row.key) if row else None

    def current(self) -> LoadedModel:
        with self._lock:
            now = time.monotonic()
            if self._model is None or now - self._checked_at >= self.check_interval_s:
                try:
                    active = self._active()
                except Exception as exc:  # noqa: BLE001 - keep serving the loaded model through a DB blip
                    if self._model is None:
                        raise
                    log.warning("cannot read the active model version, keeping %s: %s", self._model.version, exc)
                    active = (self._model.version, "")
                self._checked_at = now
                if active is None:
                    raise NoActiveModel("no model version is active in the registry")
                version, key = active
                if self._model is None or self._model.version != version:
                    previous = self._model.version if self._model else None
                    self._model = self.loader(key)
                    if previous:
                        log.info("switched model %s -> %s", previous, version)
            return self._model
