"""Micro-batching, like Triton's dynamic batcher: requests arriving together share one run.

Task threads decode and preprocess their photo, then ``submit`` it; one batcher thread takes
whatever has been submitted and runs it as one batch once any of these holds:
  * ``max_size`` requests are waiting;
  * no other task thread is still preparing a request (nothing more is coming, so waiting
    would only add latency: a lone photo runs at once);
  * the oldest request has waited ``max_delay_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["MicroBatcher", "BatchOutput", "Slot"]

log = logging.getLogger(__name__)


class Runnable(Protocol):
    def run(self, images: np.ndarray) -> np.ndarray: ...


@dataclass
class BatchOutput:
    probs: np.ndarray  # (C,) this request's row
    inference_ms: float  # the whole batch's run
    batch_size: int


@dataclass
class _Request:
    model: Runnable
    x: np.ndarray  # (3, S, S)
    future: Future
    t: float = field(default_factory=time.monotonic)


class Slot:
    """A task thread's place in the batcher, held while it prepares its request."""

    def __init__(self, batcher: "MicroBatcher") -> None:
        self._batcher, self.future = batcher, None

    def submit(self, model: Runnable, x: np.ndarray) -> Future:
        assert self.future is None, "a slot carries one request"
        self.future = self._batcher._put(model, x)
        return self.future


class MicroBatcher:
    def __init__(self, max_size: int = 16, max_delay_s: float = 0.01, name: str = "micro-batcher",
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        """``on_batch(model version, batch size, seconds)`` is called after each run (metrics)."""
        assert max_size >= 1, "max_size must be at least 1"
        self.max_size, self.max_delay_s, self.name = max_size, max_delay_s, name
        self.on_batch = on_batch
        self._cv = threading.Condition()
        self._queue: list[_Request] = []
        self._preparing = 0  # slots open but not yet submitted
        self._thread: threading.Thread | None = None
        self.batches_run = 0

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """Announce a request in preparation; leaving the block without submitting withdraws it."""
        self._ensure_thread()
        with self._cv:
            self._preparing += 1
        slot = Slot(self)
        try:
            yield slot
        finally:
            if slot.future is None:
                with self._cv:
                    self._preparing -= 1
                    self._cv.notify_all()

    def _put(self, model: Runnable, x: np.ndarray) -> Future:
        future: Future = Future()
        with self._cv:
            self._queue.append(_Request(model, x, future))
            self._preparing -= 1
            self._cv.notify_all()
        return future

    def _ensure_thread(self) -> None:
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _next_batch(self) -> list[_Request]:
        with self._cv:
            while not self._queue:
                self._cv.wait()
            deadline = self._queue[0].t + self.max_delay_s
            while len(self._queue) < self.max_size and self._preparing > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            batch, self._queue = self._queue[: self.max_size], self._queue[self.max_size :]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            groups: dict[int, list[_Request]] = {}
            for req in batch:  # a model switch can put two versions in one window
                groups.setdefault(id(req.model), []).append(req)
            for reqs in groups.values():
                self._run(reqs)

    def _run(self, reqs: list[_Request]) -> None:
        try:
            t0 = time.perf_counter()
            probs = reqs[0].model.run(np.stack([r.x for r in reqs]))
            ms = (time.perf_counter() - t0) * 1000.0
        except BaseException as exc:  # noqa: BLE001 - the requests fail, the batcher lives on
            log.exception("batch of %d failed", len(reqs))
            for r in reqs:
                r.future.set_exception(exc)
            return
        self.batches_run += 1
        if self.on_batch is not None:
            self.on_batch(str(getattr(reqs[0].model, "version", "unknown")), len(reqs), ms / 1000.0)
        for i, r in enumerate(reqs):
            r.future.set_result(BatchOutput(probs[i], ms, len(reqs)))
