"""Partial labels as calibration evidence (a "Yes" to a hedged answer: the truth is one of a node's
leaves): the λ tables count an answer known right when the node's leaves are all under it, known
wrong when none is, and leave it out where unknown; leaf labels give exactly the old tables."""

from __future__ import annotations

import numpy as np
import pytest

from shared.hedging.calibration import (
    calibrate,
    calibrate_for_unit,
    crc_bounds,
    crc_lambda,
    crc_lambda_by_sender,
    group_lambdas,
    leaf_sets,
    node_leaf_sets,
)
from shared.hedging.darts import darts_path, info_gain_rewards, node_probabilities, tree_arrays
from shared.taxonomy import load_taxonomy
from tests.shared.hedging.synth import synthetic

TAX = load_taxonomy()
L = len(TAX.leaves)
TOPS = [i for i, leaf in enumerate(TAX.leaves) if leaf.startswith("body.top.")]
SHOES = TAX.leaves.index("feet.shoes")


def _peaked(n: int, leaves: list[int], rng: np.random.Generator, strength: float = 6.0) -> np.ndarray:
    """Leaf probabilities with the mass spread over ``leaves`` (the model sure of the branch)."""
    logits = rng.normal(0.0, 0.3, (n, L))
    logits[:, leaves] += strength
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def base():
    rng = np.random.default_rng(3)
    p, y = synthetic(600, L, rng)
    return p, y, rng.integers(0, 120, size=600)


@pytest.mark.parametrize("unit", ["photo", "sender", "group"])
def test_leaf_labels_as_sets_give_the_same_tables(base, unit: str) -> None:
    p, y, senders = base
    a = calibrate_for_unit(p, y, senders, TAX, unit)
    b = calibrate_for_unit(p, leaf_sets(y, L), senders, TAX, unit)
    assert a.lam == b.lam and a.calib_accuracy == b.calib_accuracy and b.n_partial is None


def test_bounds_of_a_partial_label() -> None:
    """Sure of the tops but not which one, labelled "a top": unknown while the nested answer is one
    top (or none yet), right from the λ where it is body.top; labelled "shoes": wrong until the root."""
    arrays = tree_arrays(TAX)
    p = np.full((1, L), 0.002)
    p[0, TOPS[0]], p[0, TOPS[1]] = 0.7, 0.3 - 0.002 * (L - 2)  # a t-shirt, perhaps a polo
    path = darts_path(node_probabilities(p, arrays.leaf_matrix), info_gain_rewards(TAX), arrays.lca)
    lo, hi = crc_bounds(path, node_leaf_sets(["body.top"], TAX), arrays.leaf_mask)
    assert lo[0] == 0.0 and 0.0 < hi[0] < 1e6  # unknown on [0, hi): a top was answered, which one is not said
    lo, hi = crc_bounds(path, node_leaf_sets(["feet.shoes"], TAX), arrays.leaf_mask)
    assert lo[0] == hi[0] > 0  # a leaf label: no unknown stretch
    node_of = path.nested[0, np.searchsorted(path.breaks[0], hi[0], side="right") - 1]
    assert TAX.node_names[node_of] in ("", "body")  # covers the shoes only where it covers everything above


def test_partial_labels_move_lambda_the_right_way(base) -> None:
    """Partial labels the model contradicts (sure of the shoes, a "Yes" to "a top") raise λ: more
    hedging; ones it agrees with at the node (sure it is a top) never raise it."""
    p, y, _ = base
    rng = np.random.default_rng(1)
    sets = leaf_sets(y, L)
    before = calibrate(p, y, TAX)
    wrong_p = _peaked(80, [SHOES], rng)
    right_p = _peaked(200, TOPS, rng)
    tops = node_leaf_sets(["body.top"] * 80, TAX)
    worse = calibrate(np.vstack([p, wrong_p]), np.vstack([sets, tops]), TAX)
    better = calibrate(np.vstack([p, right_p]), np.vstack([sets, node_leaf_sets(["body.top"] * 200, TAX)]), TAX)
    assert worse.n_partial == 80 and better.n_partial == 200
    for k, target in enumerate(before.targets):
        assert worse.lam["crc"][k] >= before.lam["crc"][k]
        assert better.lam["crc"][k] <= before.lam["crc"][k]
    k = before.targets.index(0.9)
    assert worse.lam["crc"][k] > before.lam["crc"][k]  # 80 known errors in 680 photos must show at 0.9
    assert worse.calib_accuracy["crc"][k] >= 0.9 - 1e-9


def test_unknown_answers_are_excluded_not_counted() -> None:
    """Photos unknown until the root (their answer always finer than the verdict) leave λ̂ exactly
    where it was; counting them wrong would raise it, counting them right would lower it."""
    rng = np.random.default_rng(2)
    tau = rng.exponential(2.0, 400)
    lam_max = 1e6
    extra = 60
    lo = np.concatenate([tau, np.zeros(extra)])
    hi = np.concatenate([tau, np.full(extra, lam_max)])
    as_wrong = np.concatenate([tau, np.full(extra, lam_max)])
    as_right = np.concatenate([tau, np.zeros(extra)])
    for target in (0.8, 0.9, 0.95):
        plain = crc_lambda(tau, target, lam_max)
        assert crc_lambda(hi, target, lam_max, lo) == plain
        assert crc_lambda(as_wrong, target, lam_max) > plain
        assert crc_lambda(as_right, target, lam_max) < plain
        # per sender and per group: people whose photos are all unknown are left out as well
        senders = rng.integers(0, 40, 400)
        both = np.concatenate([senders, 1000 + np.arange(extra) % 10])
        assert crc_lambda_by_sender(hi, both, target, lam_max, lo) == crc_lambda_by_sender(tau, senders, target, lam_max)
        assert crc_lambda(tau, target, lam_max, lo=tau) == plain  # lo = τ: leaf labels, the plain rule
    g_plain = group_lambdas(tau, senders, [0.8, 0.9], lam_max)
    g_unknown = group_lambdas(hi, both, [0.8, 0.9], lam_max, lo=lo)
    assert np.all(g_unknown <= g_plain * 1.05 + 1e-9)  # a bootstrap over other people: close, not equal


def test_label_sets_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        leaf_sets(np.zeros((2, L), bool), L)
    with pytest.raises(ValueError, match="not a node"):
        node_leaf_sets(["body.nope"], TAX)
