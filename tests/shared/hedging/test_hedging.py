"""Serving: explained answers, nesting across targets, input errors, single = batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.hedging.calibration import calibrate
from shared.hedging.darts import tree_arrays
from shared.hedging.errors import CalibrationError, HedgeInputError
from shared.hedging.hedging import Hedger, get_hedger, hedge, hedge_batch
from shared.schemas import HedgedAnswer
from shared.taxonomy import load_taxonomy
from tests.shared.hedging.synth import synthetic
from tests.shared.hedging.trees import FOUR_LEAF, prob_vectors

TAX = load_taxonomy()
L = len(TAX.leaves)
_rng = np.random.default_rng(11)
_P, _Y = synthetic(1500, L, _rng)
CAL = calibrate(_P, _Y, TAX).model_dump()  # what ModelCard.calibration holds
HEDGER = get_hedger(TAX, CAL)
TARGETS = st.floats(0.5, 0.999)


@settings(max_examples=150, deadline=None)
@given(prob_vectors(L), st.lists(TARGETS, min_size=2, max_size=5))
def test_higher_target_never_more_specific(p, targets) -> None:
    arrays = HEDGER.arrays
    idx = {n: i for i, n in enumerate(TAX.node_names)}
    targets = sorted(targets)
    crc = [idx[HEDGER.hedge(p, t, "crc").node.name] for t in targets]
    darts = [HEDGER.hedge(p, t, "darts") for t in targets]
    for lo, hi in zip(crc, crc[1:]):
        assert arrays.lca[hi, lo] == hi, "crc: the answer for a higher target must be an ancestor-or-equal"
    for lo, hi in zip(darts, darts[1:]):  # plain DARTS: monotone in reward/probability, not always nested
        assert hi.info_gain <= lo.info_gain + 1e-12
        assert hi.node.probability >= lo.node.probability - 1e-12


@settings(max_examples=100, deadline=None)
@given(prob_vectors(L), TARGETS, st.sampled_from(["crc", "darts"]))
def test_answer_explains_itself(p, target, method) -> None:
    a = HEDGER.hedge(p, target, method)
    HedgedAnswer.model_validate(a.model_dump())
    node = TAX.nodes[a.node.name]
    assert [r.name for r in a.path] == TAX.ancestors(node.name)
    assert a.path[-1].name == "" and a.node.display == node.display and a.node.icon == node.icon
    lm = tree_arrays(TAX).leaf_matrix[TAX.node_names.index(node.name)]
    assert a.node.probability == pytest.approx(float(p @ lm), abs=1e-9)
    assert a.method == method and a.accuracy_target == pytest.approx(target)
    assert a.info_gain == pytest.approx(TAX.info_gain[TAX.node_names.index(node.name)])
    probs = [alt.probability for alt in a.alternatives]
    assert probs == sorted(probs, reverse=True) and len(probs) <= 3 and all(q > 0 for q in probs)
    for alt in a.alternatives:
        assert alt.name != node.name and node.name in TAX.ancestors(alt.name)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), TARGETS, st.sampled_from(["crc", "darts"]))
def test_single_equals_batch(seed, target, method) -> None:
    p, _ = synthetic(20, L, np.random.default_rng(seed))
    batch = hedge_batch(p, TAX, CAL, target, method)
    single = [hedge(x, TAX, CAL, target, method) for x in p]
    assert [a.node.name for a in batch] == [a.node.name for a in single]
    assert list(HEDGER.choose_batch(p, target, method)) == [HEDGER.choose_one(x, target, method) for x in p]
    # float32 input (ONNX output) is accepted and gives the same answers
    assert [hedge(x.astype(np.float32), TAX, CAL, target, method).node.name for x in p] == [a.node.name for a in single]


def test_default_method_is_crc_and_cache_is_reused() -> None:
    p = _P[0]
    assert hedge(p, TAX, CAL, 0.9).method == "crc"
    assert get_hedger(TAX, CAL) is HEDGER


def test_four_leaf_hand_example_end_to_end() -> None:
    """FOUR_LEAF, p = (0.4, 0.35, 0.15, 0.1): a1 below λ = 1/7, A up to λ = 3, then the root.
    With a hand-made table (λ = 0 up to 0.8, 1 up to 0.95, 5 above) the answers follow."""
    from shared.hedging.calibration import DEFAULT_TARGETS, Calibration

    lam = [0.0 if t <= 0.8 else 1.0 if t <= 0.95 else 5.0 for t in DEFAULT_TARGETS]
    cal = Calibration(taxonomy_version=FOUR_LEAF.version, taxonomy_digest=FOUR_LEAF.digest,
                      rewards=FOUR_LEAF.info_gain.tolist(), n=100, targets=list(DEFAULT_TARGETS),
                      lam={"crc": lam, "darts": lam}, calib_accuracy={"crc": [1.0] * len(lam), "darts": [1.0] * len(lam)})
    h = Hedger(FOUR_LEAF, cal)
    p = [0.4, 0.35, 0.15, 0.1]
    a = h.hedge(p, 0.7)
    assert (a.node.name, a.lam, a.info_gain) == ("n0.n1", 0.0, 2.0) and a.alternatives == []
    a = h.hedge(p, 0.9)
    assert a.node.name == "n0" and a.node.probability == pytest.approx(0.75)
    assert [(x.name, round(x.probability, 6)) for x in a.alternatives] == [("n0.n1", 0.4), ("n0.n2", 0.35)]
    assert [r.name for r in a.path] == ["n0", ""]
    a = h.hedge(p, 0.99, "darts")
    assert a.node.name == "" and a.method == "darts" and a.info_gain == 0.0
    assert [x.name for x in a.alternatives] == ["n0", "n0.n1", "n0.n2"]


@pytest.mark.parametrize(
    "probs, accuracy, method, match",
    [
        (np.full(L, 1 / L), 0.3, None, "accuracy"),
        (np.full(L, 1 / L), 1.0, None, "accuracy"),
        (np.full(L, 1 / L), float("nan"), None, "accuracy"),
        (np.full(L - 1, 1 / (L - 1)), 0.9, None, f"expected {L} leaf probabilities"),
        (np.full((2, L), 1 / L), 0.9, None, "one photo"),
        (np.r_[np.nan, np.full(L - 1, 1 / L)], 0.9, None, "NaN"),
        (np.full(L, 1.0), 0.9, None, "sum to 1"),
        (np.r_[-0.5, 1.5, np.zeros(L - 2)], 0.9, None, "≥ 0"),
        (["a"] * L, 0.9, None, "numbers"),
        (np.full(L, 1 / L), 0.9, "greedy", "method"),
    ],
)
def test_clear_errors(probs, accuracy, method, match) -> None:
    with pytest.raises(ValueError, match=match):
        hedge(probs, TAX, CAL, accuracy, method)
    assert issubclass(HedgeInputError, ValueError)


def test_calibration_for_another_taxonomy_is_refused() -> None:
    with pytest.raises(CalibrationError, match="taxonomy"):
        Hedger(FOUR_LEAF, CAL)


def test_probabilities_in_the_models_class_order_hedge_as_in_taxonomy_order() -> None:
    """A model whose classes come in another order (or lack a leaf) is hedged from its own
    output order: same answer as the taxonomy-ordered vector with the missing leaf at 0."""
    rng = np.random.default_rng(5)
    order = rng.permutation(L)[: L - 1]  # the model lacks one leaf
    classes = [TAX.leaves[i] for i in order]
    own = Hedger(TAX, CAL, classes)
    for p in rng.dirichlet(np.full(L - 1, 0.3), size=50):
        full = np.zeros(L)
        full[order] = p
        for method in ("crc", "darts"):
            mine, ref = own.hedge(p, 0.9, method), HEDGER.hedge(full, 0.9, method)
            assert mine.node.name == ref.node.name and mine.node.probability == pytest.approx(ref.node.probability)


def test_classify_gives_the_answer_and_the_top_classes_from_one_normalisation() -> None:
    classes = TAX.leaves[::-1]
    h = Hedger(TAX, CAL, classes)
    p = np.zeros(L, dtype=np.float32)
    p[:3] = [0.5, 0.3, 0.2002]  # float32 softmax: off by a little, normalised once
    result = h.classify(p, 0.9, top_k=3)
    assert [t.name for t in result.top_predictions] == classes[:3]
    assert sum(t.probability for t in result.top_predictions) == pytest.approx(1.0)
    assert result.answer == h.hedge(p, 0.9)


def test_classes_outside_the_taxonomy_are_refused() -> None:
    with pytest.raises(CalibrationError, match="not leaves"):
        Hedger(TAX, CAL, [*TAX.leaves[:-1], "body.top.toga"])
