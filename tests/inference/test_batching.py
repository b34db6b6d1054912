"""The micro-batcher: when it runs a batch, what it puts in it, how it fails."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.inference.batching import MicroBatcher


class Model:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    def run(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(len(images))
        if self.fail:
            raise RuntimeError("boom")
        return images.reshape(len(images), -1)[:, :2]  # row i is request i's own input


def x(v: float) -> np.ndarray:
    return np.full((3, 2, 2), v, dtype=np.float32)


def test_lone_request_runs_at_once_without_waiting_for_the_delay():
    # a delay no test run lasts: an answer at all shows the batcher did not wait for it
    batcher, model = MicroBatcher(max_size=8, max_delay_s=3600.0), Model()
    with batcher.slot() as slot:
        future = slot.submit(model, x(1))
    out = future.result(timeout=60)
    assert out.batch_size == 1 and model.batches == [1]


def test_requests_prepared_together_share_one_batch_and_get_their_own_rows():
    batcher, model = MicroBatcher(max_size=8, max_delay_s=5.0), Model()
    slots = [batcher.slot() for _ in range(5)]
    opened = [s.__enter__() for s in slots]  # five threads "preparing"
    futures = []
    for i, (cm, slot) in enumerate(zip(slots, opened)):
        futures.append(slot.submit(model, x(i)))
        cm.__exit__(None, None, None)
    outs = [f.result(timeout=60) for f in futures]
    assert model.batches == [5]
    assert [o.probs[0] for o in outs] == [0, 1, 2, 3, 4]
    assert all(o.batch_size == 5 for o in outs)


def test_batch_is_capped_at_max_size():
    batcher, model = MicroBatcher(max_size=4, max_delay_s=5.0), Model()
    barrier = threading.Barrier(10)

    def one(i: int) -> int:
        with batcher.slot() as slot:
            barrier.wait()
            future = slot.submit(model, x(i))
        return future.result(timeout=60).batch_size

    with ThreadPoolExecutor(10) as pool:
        sizes = list(pool.map(one, range(10)))
    assert max(model.batches) <= 4 and sum(model.batches) == 10
    assert max(sizes) <= 4


def test_delay_bounds_the_wait_for_a_slot_that_never_submits():
    batcher, model = MicroBatcher(max_size=8, max_delay_s=0.05), Model()
    stuck = batcher.slot()
    stuck.__enter__()  # a thread still decoding a huge photo, for as long as the test runs
    with batcher.slot() as slot:
        future = slot.submit(model, x(1))
    assert future.result(timeout=60).batch_size == 1  # answered while the stuck slot is still open
    stuck.__exit__(None, None, None)


def test_withdrawn_slot_does_not_hold_back_the_others():
    batcher, model = MicroBatcher(max_size=8, max_delay_s=5.0), Model()
    with batcher.slot() as slot:
        with pytest.raises(ValueError):
            with batcher.slot():
                raise ValueError("bad photo")
        future = slot.submit(model, x(2))
    assert future.result(timeout=60).batch_size == 1


def test_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    batcher = MicroBatcher(max_size=8, max_delay_s=0.01)
    with batcher.slot() as slot:
        bad = slot.submit(Model(fail=True), x(1))
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(timeout=60)
    with batcher.slot() as slot:
        good = slot.submit(Model(), x(3))
    assert good.result(timeout=60).probs[0] == 3


def test_requests_for_two_models_run_in_separate_batches():
    batcher, a, b = MicroBatcher(max_size=8, max_delay_s=5.0), Model(), Model()
    cms = [batcher.slot() for _ in range(4)]
    slots = [cm.__enter__() for cm in cms]
    futures = [slot.submit(a if i % 2 else b, x(i)) for i, slot in enumerate(slots)]
    for cm in cms:
        cm.__exit__(None, None, None)
    [f.result(timeout=60) for f in futures]
    assert a.batches == [2] and b.batches == [2]
