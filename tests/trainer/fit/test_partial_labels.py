"""A "Yes" to a hedged answer teaches as a partial label: −log Σ_{leaves under the node} p."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.trainer.fit.loop import hits, label_targets, partial_label_loss
from shared.taxonomy import load_taxonomy

TAX = load_taxonomy()


def test_inner_nodes_become_masks_of_their_leaves():
    leaf = TAX.leaves[0]
    parent = TAX.nodes[leaf].parent
    y, masks = label_targets([leaf, parent, leaf], TAX)
    assert y[0] == y[2] == 0 and y[1] == len(TAX.leaves)
    under = [i for i, name in enumerate(TAX.leaves) if name.startswith(parent + ".")]
    assert masks.shape == (1, len(TAX.leaves)) and masks[0].nonzero().flatten().tolist() == under
    assert label_targets([leaf], TAX)[1] is None, "leaves only: no masks"
    with pytest.raises(ValueError, match="not a node"):
        label_targets(["body.cape"], TAX)


def test_the_loss_is_minus_log_of_the_mass_under_the_node_and_unchanged_for_leaves():
    leaf = TAX.leaves[0]
    parent = TAX.nodes[leaf].parent
    y, masks = label_targets([leaf, parent], TAX)
    logits = torch.randn(2, len(TAX.leaves))
    ce = torch.nn.CrossEntropyLoss()
    loss = partial_label_loss(ce, masks)
    labels = torch.from_numpy(y)
    p = torch.softmax(logits[1], 0)
    expected = (ce(logits[:1], labels[:1]) - torch.log(p[masks[0]].sum())) / 2
    assert float(loss(logits, labels)) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss(logits[:1], labels[:1])) == float(ce(logits[:1], labels[:1])), "a batch of leaves: the old loss"
    assert hits(logits, labels, masks).tolist() == [int(logits[0].argmax()) == 0,
                                                    bool(masks[0, int(logits[1].argmax())])]


def test_gradient_moves_mass_into_the_node_without_choosing_a_leaf():
    leaf = TAX.leaves[0]
    parent = TAX.nodes[leaf].parent
    y, masks = label_targets([parent], TAX)
    logits = torch.zeros(1, len(TAX.leaves), requires_grad=True)
    partial_label_loss(torch.nn.CrossEntropyLoss(), masks)(logits, torch.from_numpy(y)).backward()
    grad = logits.grad[0]
    inside = grad[masks[0]]
    assert (inside < 0).all() and (grad[~masks[0]] > 0).all()
    assert np.allclose(inside.numpy(), inside[0].item()), "every leaf under the node gains alike"
