"""A quick job's trim of the fine-tuning loop: each photo trained on ``views_per_epoch`` of its
cached views per epoch, drawn afresh each epoch (``fit.loop.fit_on_views``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from services.trainer.fit.loop import fit_on_views, new_net
from shared.recipe import Recipe


class _Recording(np.ndarray):
    """Activations that remember which (view, photo) pairs a batch read."""

    reads: list

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], np.ndarray):
            self.reads.append((np.asarray(key[0]).copy(), np.asarray(key[1]).copy()))
        return np.asarray(super().__getitem__(key))


def _run(views_per_epoch: int | None, epochs: int = 3) -> tuple[list, int]:
    recipe = Recipe(input_size=64, resize_size=72, split_block=15, views=1, epochs=epochs, batch_size=8, threads=1)
    torch.manual_seed(0)
    net = new_net(recipe, 4)
    with torch.no_grad():
        shape = net.front(torch.zeros(1, 3, 64, 64)).shape[1:]
    n_views, n = 3, 12
    acts = np.random.default_rng(0).normal(size=(n_views, n, *shape)).astype(np.float32).view(_Recording)
    acts.reads = []
    y = np.arange(n) % 4
    train_idx = np.arange(2, n)  # two photos never trained on
    fit_on_views(net, acts, train_idx, y, recipe, np.asarray(acts)[0, :4], y[:4], views_per_epoch=views_per_epoch)
    return acts.reads, len(train_idx)


def test_one_view_per_photo_per_epoch_drawn_afresh() -> None:
    reads, n = _run(1, epochs=3)
    pairs = [(int(v), int(p)) for views, photos in reads for v, p in zip(views, photos)]
    assert len(pairs) == 3 * n, "each epoch: every training photo once"
    per_epoch = [pairs[e * n:(e + 1) * n] for e in range(3)]
    for epoch in per_epoch:
        assert sorted(p for _, p in epoch) == list(range(2, 12))
    views_of = {p: {v for e in per_epoch for v, q in e if q == p} for p in range(2, 12)}
    assert any(len(v) > 1 for v in views_of.values()), "the drawn view changes between epochs"
    assert Counter(v for v, _ in pairs).keys() == {0, 1, 2}, "every kind of view still teaches"


def test_without_the_trim_every_view_of_every_photo_each_epoch() -> None:
    reads, n = _run(None, epochs=1)
    pairs = sorted((int(v), int(p)) for views, photos in reads for v, p in zip(views, photos))
    assert pairs == [(v, p) for v in range(3) for p in range(2, 12)]
