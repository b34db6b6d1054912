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


# --- partial labels (a "Yes" to a hedged answer: the truth is one of the node's leaves) ------------
def _sets(labels: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(labels), n), bool)
    out[np.arange(len(labels)), labels] = True
    return out


def test_temperature_on_one_leaf_sets_is_the_temperature_on_leaves():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2.0, size=(800, 6))
    labels = sample_labels(softmax(logits * 0.5), rng)
    assert fit_temperature(logits, _sets(labels, 6)) == pytest.approx(fit_temperature(logits, labels), rel=1e-4)


def test_partial_labels_move_the_temperature_the_right_way():
    """Leaves 0 and 1 are one node. Photos the model is sure are "0 or 1" (unsure which) and whose
    verdict says "the node" support its confidence: a lower T. The same photos with a verdict naming
    a node of other leaves contradict it: a higher T. Leaf-labelled photos alone sit between."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 2.0, size=(1000, 6))
    labels = sample_labels(softmax(base), rng)
    sure_of_node = rng.normal(0, 0.5, size=(300, 6))
    sure_of_node[:, :2] += 3.0
    node = np.zeros((300, 6), bool)
    node[:, :2] = True
    elsewhere = ~node
    t_leaves = fit_temperature(base, _sets(labels, 6))
    t_agree = fit_temperature(np.vstack([base, sure_of_node]), np.vstack([_sets(labels, 6), node]))
    t_contradict = fit_temperature(np.vstack([base, sure_of_node]), np.vstack([_sets(labels, 6), elsewhere]))
    assert t_agree < t_leaves < t_contradict


def test_cross_fitting_uses_partial_labels_and_says_so():
    from services.trainer.pipelines.cv import cross_fit
    from shared.hedging.calibration import node_leaf_sets
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    rng = np.random.default_rng(4)
    n, leaves = 300, taxonomy.leaves
    logits = rng.normal(0, 2.0, size=(n, len(leaves)))
    names = [leaves[k] for k in sample_labels(softmax(logits), rng)]
    names[:40] = [taxonomy.nodes[x].parent for x in names[:40]]  # 40 verdicts "a Yes to the parent"
    sets = node_leaf_sets(names, taxonomy)
    oof = {"labels": sets.argmax(1), "senders": np.array([f"s{i % 30}" for i in range(n)]),
           "folds": np.arange(n) % 3, "logits_0": logits.astype(np.float32), "label_sets": sets}
    fit = cross_fit(oof, taxonomy, "photo", "test")
    assert fit.temperature == pytest.approx(fit_temperature(logits, sets), rel=1e-6)
    partial = int((sets.sum(1) > 1).sum())
    assert partial > 0 and fit.source["partial_label_photos"] == partial and fit.calibration.n_partial == partial
    assert fit.source["photos"] == n
