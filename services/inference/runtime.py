"""ONNX Runtime sessions, and following the registry's active model version without a restart.

One session per model version per process, created on first use; ``ModelTracker.current()``
re-reads the active version from the database at most every ``check_interval_s`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import registry
from shared.db import session_scope
from shared.model_card import ModelCard

__all__ = ["LoadedModel", "load_model", "ModelTracker", "NoActiveModel", "pick_providers"]

log = logging.getLogger(__name__)
INPUT_NAME = "images"


class NoActiveModel(RuntimeError):
    """The registry has no active model version."""


def pick_providers(prefer_gpu: bool = True) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if prefer_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass(eq=False)  # identity equality: the batcher groups requests by model object
class LoadedModel:
    version: str
    card: ModelCard
    session: object  # onnxruntime.InferenceSession
    output_name: str
    provider: str

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def run(self, images: np.ndarray) -> np.ndarray:
        """[N, 3, S, S] float32 → [N, len(classes)] probabilities."""
        (probs,) = self.session.run([self.output_name], {INPUT_NAME: images})
        assert probs.shape == (images.shape[0], len(self.classes)), (
            f"model {self.version} returned {probs.shape}, expected ({images.shape[0]}, {len(self.classes)})"
        )
        return probs


def load_model(path: str | Path, prefer_gpu: bool = True, intra_op_threads: int = 0) -> LoadedModel:
    import onnxruntime as ort

    path = Path(path)
    card = ModelCard.load(path)
    opts = ort.SessionOptions()
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    session = ort.InferenceSession(str(path / card.onnx_file), opts, providers=pick_providers(prefer_gpu))
    provider = session.get_providers()[0]
    log.info("loaded model %s from %s on %s", card.version, path, provider)
    return LoadedModel(card.version, card, session, card.onnx_output, provider)


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
