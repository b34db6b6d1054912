"""Properties of the DARTS core on random trees, plus hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.hedging.darts import (
    LAM_MAX,
    choose,
    darts_path,
    expected_reward,
    info_gain_rewards,
    is_correct,
    node_probabilities,
    path_choice,
    prior_rewards,
    tree_arrays,
)
from tests.shared.hedging.trees import FOUR_LEAF, JUMP_TREE, prob_vectors, taxonomies

SETTINGS = settings(max_examples=120, deadline=None)
lams = st.one_of(st.just(0.0), st.floats(0.0, 50.0), st.floats(0.0, 1e5))


def _is_ancestor_or_equal(arrays, anc: int, node: int) -> bool:
    return bool(arrays.lca[anc, node] == anc)


@st.composite
def tree_and_probs(draw, n: int = 1):
    tax = draw(taxonomies())
    probs = np.stack([draw(prob_vectors(len(tax.leaves))) for _ in range(n)])
    return tax, probs


@SETTINGS
@given(tree_and_probs(n=3), st.lists(lams, min_size=1, max_size=6))
def test_choice_is_a_node_and_monotone_in_lambda(data, lam_list) -> None:
    tax, probs = data
    arrays = tree_arrays(tax)
    r = info_gain_rewards(tax)
    p = node_probabilities(probs, arrays.leaf_matrix)
    prev_p, prev_r = np.full(3, -np.inf), np.full(3, np.inf)
    for lam in sorted(lam_list):
        nodes = choose(p, lam, r)
        assert nodes.shape == (3,) and np.all((0 <= nodes) & (nodes < arrays.n_nodes))
        chosen_p, chosen_r = p[np.arange(3), nodes], r[nodes]
        assert np.all(chosen_p >= prev_p - 1e-9), "probability of the answer fell as λ grew"
        assert np.all(chosen_r <= prev_r + 1e-9), "reward of the answer rose as λ grew"
        prev_p, prev_r = chosen_p, chosen_r


@SETTINGS
@given(tree_and_probs(n=2))
def test_lambda_zero_maximises_expected_reward(data) -> None:
    tax, probs = data
    arrays = tree_arrays(tax)
    for r in (info_gain_rewards(tax), prior_rewards(tax, np.arange(1, len(tax.leaves) + 1))):
        p = node_probabilities(probs, arrays.leaf_matrix)
        nodes = choose(p, 0.0, r)
        er = expected_reward(p, r)
        assert np.allclose(er[np.arange(2), nodes], er.max(axis=1), rtol=1e-9, atol=1e-12)


@SETTINGS
@given(taxonomies(), st.data(), st.one_of(lams, st.just(1e12)))
def test_one_hot_chooses_the_leaf(tax, data, lam) -> None:
    arrays = tree_arrays(tax)
    j = data.draw(st.integers(0, len(tax.leaves) - 1))
    onehot = np.zeros(len(tax.leaves))
    onehot[j] = 1.0
    p = node_probabilities(onehot[None], arrays.leaf_matrix)
    counts = data.draw(st.lists(st.integers(0, 50), min_size=len(tax.leaves), max_size=len(tax.leaves)))
    for r in (info_gain_rewards(tax), prior_rewards(tax, counts)):
        assert choose(p, lam, r)[0] == arrays.leaf_node[j]
        if lam < LAM_MAX:  # the path agrees (the root takes over only at the cap)
            assert path_choice(darts_path(p, r, arrays.lca), lam, nested=True)[0] == arrays.leaf_node[j]


@SETTINGS
@given(tree_and_probs(n=4), st.lists(st.floats(0.0, 200.0), min_size=2, max_size=6))
def test_path_matches_choose_and_nested_is_nested(data, lam_list) -> None:
    tax, probs = data
    arrays = tree_arrays(tax)
    r = info_gain_rewards(tax)
    p = node_probabilities(probs, arrays.leaf_matrix)
    path = darts_path(p, r, arrays.lca)
    # breakpoints: 0 first, strictly increasing, then only padding (inf)
    finite = np.isfinite(path.breaks)
    assert np.all(path.breaks[:, 0] == 0) and np.all(finite[:, :-1] >= finite[:, 1:])
    with np.errstate(invalid="ignore"):
        assert np.all((np.diff(path.breaks, axis=1) > 0) | ~finite[:, 1:])
    prev = None
    for lam in sorted(lam_list):
        plain = path_choice(path, lam, nested=False)
        on_break = np.isclose(path.breaks, lam, rtol=1e-8).any(axis=1)
        assert np.array_equal(plain[~on_break], choose(p, lam, r)[~on_break])
        nested = path_choice(path, lam, nested=True)
        # the nested answer contains the plain one, and grows with λ
        assert all(_is_ancestor_or_equal(arrays, n, c) for n, c in zip(nested, plain))
        if prev is not None:
            assert all(_is_ancestor_or_equal(arrays, n, q) for n, q in zip(nested, prev))
        prev = nested
        # serving's stop-early walk gives the same nested answer
        stopped = darts_path(p, r, arrays.lca, stop=lam).nested[:, -1]
        assert np.array_equal(stopped[~on_break], nested[~on_break])
    assert np.all(path_choice(path, LAM_MAX, nested=False) == 0)
    assert np.all(path_choice(path, LAM_MAX, nested=True) == 0)


@SETTINGS
@given(taxonomies(), st.data())
def test_prior_rewards_root_zero_and_parents_below_children(tax, data) -> None:
    counts = data.draw(st.lists(st.integers(0, 1000), min_size=len(tax.leaves), max_size=len(tax.leaves)))
    r = prior_rewards(tax, counts)
    arrays = tree_arrays(tax)
    assert r[0] == 0.0 and np.all(np.isfinite(r))
    child = np.flatnonzero(arrays.parent >= 0)
    assert np.all(r[arrays.parent[child]] <= r[child] + 1e-12)


def test_four_leaf_example_by_hand() -> None:
    """root → A{a1, a2}, B{b1, b2}; p = (0.4, 0.35, 0.15, 0.1); rewards 0 / 1 / 2 bits.

    λ = 0: a1 scores 2·0.4 = 0.8, A 1·0.75 = 0.75, B 0.25, b1 0.3 → a1.
    a1 vs A cross where (2+λ)0.4 = (1+λ)0.75 → λ = 0.05/0.35 = 1/7; a1 vs root at 0.8/0.6 = 4/3
    (later). A vs root where (1+λ)0.75 = λ → λ = 3. So: a1 on [0, 1/7), A on [1/7, 3), root after.
    """
    arrays = tree_arrays(FOUR_LEAF)
    r = info_gain_rewards(FOUR_LEAF)
    assert r.tolist() == [0.0, 1.0, 2.0, 2.0, 1.0, 2.0, 2.0]
    p = node_probabilities(np.array([[0.4, 0.35, 0.15, 0.1]]), arrays.leaf_matrix)
    assert np.allclose(p[0], [1.0, 0.75, 0.4, 0.35, 0.25, 0.15, 0.1])
    path = darts_path(p, r, arrays.lca)
    assert path.nodes[0].tolist()[:3] == [2, 1, 0]
    assert np.allclose(path.breaks[0, :3], [0.0, 1 / 7, 3.0])
    for lam, want in ((0.0, 2), (0.14, 2), (0.15, 1), (2.99, 1), (3.01, 0), (100.0, 0)):
        assert choose(p, lam, r)[0] == want
        assert path_choice(path, lam, nested=True)[0] == want  # nested here: no branch jump


def test_plain_darts_jumps_branches_and_is_not_monotone() -> None:
    """root → U{u1..u4}, V{v1..v3}, w; p(u1) = 0.3, p(v_i) = 0.2, p(w) = 0.1.

    Rewards: leaves 3 bits, U 1, V log2(8/3) ≈ 1.415. λ = 0: u1 (0.9) beats V (0.849). V's line
    crosses u1's at (0.9 − 0.849)/(0.6 − 0.3) ≈ 0.170, before the root's (0.9/0.7 ≈ 1.29): the
    answer jumps from u1 to the sibling branch V, then to the root at 0.849/0.4 ≈ 2.12.
    With true leaf u1 plain DARTS is right, wrong, right again: its loss is not monotone in λ.
    The nested answer goes u1 → root (LCA of u1 and V) and stays right once right.
    """
    arrays = tree_arrays(JUMP_TREE)
    r = info_gain_rewards(JUMP_TREE)
    u1, big_v = JUMP_TREE.node_names.index("n0.n1"), JUMP_TREE.node_names.index("n5")
    p = node_probabilities(np.array([[0.3, 0, 0, 0, 0.2, 0.2, 0.2, 0.1]]), arrays.leaf_matrix)
    path = darts_path(p, r, arrays.lca)
    x1 = (0.9 - math.log2(8 / 3) * 0.6) / 0.3
    x2 = math.log2(8 / 3) * 0.6 / 0.4
    assert path.nodes[0, :3].tolist() == [u1, big_v, 0]
    assert np.allclose(path.breaks[0, :3], [0.0, x1, x2])
    y = np.array([0])  # true leaf u1
    plain = [bool(is_correct(path_choice(path, lam, False), y, arrays.leaf_mask)[0]) for lam in (0.1, 1.0, 3.0)]
    assert plain == [True, False, True]
    nested = [int(path_choice(path, lam, True)[0]) for lam in (0.1, 1.0, 3.0)]
    assert nested == [u1, 0, 0]


def test_choose_rejects_negative_lambda() -> None:
    arrays = tree_arrays(FOUR_LEAF)
    with pytest.raises(ValueError):
        choose(np.ones((1, arrays.n_nodes)), -1.0, info_gain_rewards(FOUR_LEAF))
