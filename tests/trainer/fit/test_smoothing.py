"""Label smoothing scoped to the taxonomy's siblings: the targets, and what the loss teaches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.recipe import Recipe
from services.trainer.fit.loop import FineTuner, sibling_smoothing_targets
from shared.taxonomy import load_taxonomy

TAX = load_taxonomy()
LEAVES = TAX.leaves
SHIRT, SHOE = LEAVES.index("body.top.t-shirt"), LEAVES.index("feet.shoes")


def test_sibling_targets_keep_the_mass_inside_the_parent() -> None:
    targets = sibling_smoothing_targets(TAX, 0.1)
    assert torch.allclose(targets.sum(dim=1), torch.ones(len(LEAVES)))
    for i, leaf in enumerate(LEAVES):
        parent = TAX.nodes[leaf].parent
        siblings = [j for j, other in enumerate(LEAVES) if TAX.nodes[other].parent == parent]
        outside = [j for j in range(len(LEAVES)) if j not in siblings]
        assert torch.all(targets[i, outside] == 0), leaf
        if len(siblings) == 1:  # feet.shoes, accessory.hat: nothing to smooth towards
            assert targets[i, i] == 1.0
        else:
            assert targets[i, i] == pytest.approx(0.9 + 0.1 / len(siblings))
    with pytest.raises(ValueError, match="label_smoothing_scope"):
        Recipe(label_smoothing_scope="cousins")


def _tuner(scope: str) -> FineTuner:
    net = torch.nn.Module()
    net.fc = torch.nn.Linear(4, len(LEAVES))
    recipe = Recipe(label_smoothing_scope=scope, class_weight_power=0.0)
    targets = sibling_smoothing_targets(TAX, recipe.label_smoothing) if scope == "siblings" else None
    y = np.arange(len(LEAVES))
    return FineTuner(net, net.fc, [{"params": list(net.fc.parameters()), "lr": 1e-3}], recipe, y, 1,
                     lambda: np.zeros((len(y), len(LEAVES)), np.float32), y, lambda *a: None,
                     torch.device("cpu"), 0.0, targets)


@pytest.mark.parametrize("scope", ["all", "siblings"])
def test_the_loss_is_cross_entropy_against_the_smoothed_targets(scope: str) -> None:
    tuner = _tuner(scope)
    logits = torch.randn(6, len(LEAVES), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([SHIRT, SHOE, 0, 3, 7, 12])
    if scope == "all":
        soft = torch.full((6, len(LEAVES)), 0.1 / len(LEAVES))
        soft[torch.arange(6), labels] += 0.9
    else:
        soft = sibling_smoothing_targets(TAX, 0.1)[labels]
    expected = -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    assert float(tuner.loss_fn(logits, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_uniform_smoothing_teaches_a_floor_on_shoe_for_a_shirt_and_sibling_smoothing_does_not() -> None:
    """Minimise each loss over free logits for one T-shirt: uniform smoothing's optimum keeps
    ε/17 on "shoe" (the doubt about "body" the hedger then reads); the sibling-scoped one drives it
    towards 0 and keeps the doubt among the tops."""
    p_shoe = {}
    for scope in ("all", "siblings"):
        tuner = _tuner(scope)
        logits = torch.zeros(1, len(LEAVES), requires_grad=True)
        opt = torch.optim.SGD([logits], lr=5.0)
        for _ in range(3000):
            opt.zero_grad()
            tuner.loss_fn(logits, torch.tensor([SHIRT])).backward()
            opt.step()
        p = torch.softmax(logits.detach(), dim=1)[0]
        p_shoe[scope] = float(p[SHOE])
    assert p_shoe["all"] == pytest.approx(0.1 / len(LEAVES), rel=0.05)
    assert p_shoe["siblings"] < 0.1 * p_shoe["all"]
