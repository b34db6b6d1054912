from __future__ import annotations

import numpy as np
import pytest

from services.trainer.model.calibrate import expected_calibration_error, fit_temperature, softmax
from shared.recipe import Recipe


def sample_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.choice(len(p), p=p) for p in probs])


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(4000, 6))
    labels = sample_labels(softmax(true_logits), rng)
    # the model is overconfident by a factor 2.5: logits scaled up
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.1)


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2.0, size=(5000, 5))
    labels = sample_labels(softmax(logits), rng)
    calibrated, bins = expected_calibration_error(softmax(logits), labels)
    overconfident, _ = expected_calibration_error(softmax(logits * 4), labels)
    assert calibrated < 0.03 < overconfident
    assert len(bins) == 15 and sum(b["n"] for b in bins) == 5000


def test_recipe_overrides_are_typed_and_unknown_fields_refused():
    r = Recipe.from_overrides({"views": "3", "tta": "true", "crop_scale": "0.5,1", "lr": "0.01"})
    assert (r.views, r.tta, r.crop_scale, r.lr) == (3, True, (0.5, 1.0), 0.01)
    with pytest.raises(ValueError, match="unknown recipe field 'epoch'"):
        Recipe.from_overrides({"epoch": "2"})
