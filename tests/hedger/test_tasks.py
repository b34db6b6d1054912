"""The hedger's task wiring helpers (the hedging itself is tested in test_hedging.py)."""

from __future__ import annotations

import numpy as np
import pytest

from services.hedger.tasks import HedgingError, build_result, leaf_vector, top_predictions
from shared.model_card import ModelCard
from shared.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


def test_leaf_vector_orders_by_taxonomy_and_gives_missing_leaves_zero(tax):
    probs = {tax.leaves[2]: 0.75, tax.leaves[0]: 0.25}
    vec = leaf_vector(probs, tax)
    assert vec[0] == 0.25 and vec[2] == 0.75 and vec.sum() == pytest.approx(1.0)


def test_leaf_vector_rejects_classes_outside_the_taxonomy(tax):
    with pytest.raises(HedgingError, match="not leaves"):
        leaf_vector({"body.top.toga": 1.0}, tax)


def test_top_predictions_are_most_probable_first_with_display_and_icon(tax):
    vec = np.linspace(0.0, 1.0, len(tax.leaves))
    vec /= vec.sum()
    top = top_predictions(vec, tax, 5)
    assert [t.name for t in top] == tax.leaves[::-1][:5]
    assert all(t.display and t.icon for t in top)


def test_build_result_hedges_with_the_model_cards_calibration(tax, model_dir):
    card = ModelCard.load(model_dir / "tiny-1")
    probs = {leaf: 1.0 / len(tax.leaves) for leaf in tax.leaves}
    result = build_result(probs, tax, card.calibration, 0.9, top_k=5)
    assert result.answer.accuracy_target == pytest.approx(0.9)
    assert len(result.top_predictions) == 5
