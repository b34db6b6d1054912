"""CutMix / mixup on cached front activations: the loss share matches what was mixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.recipe import Recipe
from services.trainer.fit.loop import mix_batch


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    # each sample's map is filled with its own index, so the mix can be read off the values
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 14, 14).contiguous()
    return x, torch.arange(n)


def test_cutmix_pastes_a_box_and_the_share_is_the_area_kept() -> None:
    x, y = _batch()
    rng = np.random.default_rng(0)
    for _ in range(20):
        mixed, partner, share = mix_batch(x, y, Recipe(mix="cutmix", mix_prob=1.0), rng)
        if partner is None:
            continue
        for i in range(len(x)):
            own = (mixed[i, 0] == y[i]).float().mean().item()
            if partner[i] != y[i]:
                assert own == pytest.approx(share), (own, share)
                assert torch.all((mixed[i] == y[i]) | (mixed[i] == partner[i]))
        assert torch.equal(x, _batch()[0])  # the cached activations are not modified in place


def test_mixup_blends_maps_in_the_same_proportion_as_the_labels() -> None:
    x, y = _batch()
    mixed, partner, share = mix_batch(x, y, Recipe(mix="mixup", mix_prob=1.0), np.random.default_rng(1))
    assert partner is not None and 0.0 <= share <= 1.0
    expected = share * y.float() + (1 - share) * partner.float()
    assert torch.allclose(mixed[:, 0, 0, 0], expected)


def test_no_mix_leaves_the_batch_alone_and_bad_names_are_refused() -> None:
    x, y = _batch()
    out, partner, share = mix_batch(x, y, Recipe(), np.random.default_rng(0))
    assert out is x and partner is None and share == 1.0
    with pytest.raises(ValueError, match="unknown mix"):
        mix_batch(x, y, Recipe(mix="blend", mix_prob=1.0), np.random.default_rng(0))
