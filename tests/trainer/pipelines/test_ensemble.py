"""``wardrobe ensemble``: two cross-validated networks averaged photo by photo, and shipped as one
ONNX graph whose answers are exactly the averaged, cross-fitted probabilities."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from services.trainer.pipelines.cv import cross_validate, load_oof
from services.trainer.pipelines.ensemble import combine_oof, ship_ensemble
from shared.recipe import Recipe
from tests.trainer.conftest import write_dataset

TINY = Recipe(input_size=64, resize_size=72, views=1, epochs=1, batch_size=16, threads=1)
OTHER = replace(TINY, dropout=0.1, epochs=2, lr=5e-3)  # same folds (same seed), another network


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    root = tmp_path_factory.mktemp("ens")
    labels = [taxonomy.nodes[leaf].labels[0] for leaf in taxonomy.leaves[:5]]
    data = write_dataset(root / "data", labels, per_label=6, senders=9)
    runs = [root / "a", root / "b"]
    for run, recipe in zip(runs, (TINY, OTHER)):
        cross_validate(data, taxonomy, run, recipe, folds=3, train_on_served=True)
    return taxonomy, data, runs


def _log_softmax(x):
    return torch.log_softmax(torch.from_numpy(np.asarray(x, np.float64)), dim=1).numpy()


@pytest.mark.slow
def test_the_ensembles_oof_is_the_mean_of_its_members_log_probabilities(two_runs):
    _, _, runs = two_runs
    a, b = load_oof(runs[0]), load_oof(runs[1])
    assert not np.allclose(a["logits_0"], b["logits_0"]), "two different networks"
    both = combine_oof(runs)
    for angle in (0, -30, 30):
        expected = 0.5 * (_log_softmax(a[f"logits_{angle}"]) + _log_softmax(b[f"logits_{angle}"]))
        np.testing.assert_allclose(both[f"logits_{angle}"], expected, atol=1e-5)
    assert np.array_equal(both["labels"], a["labels"]) and np.array_equal(both["folds"], a["folds"])


@pytest.mark.slow
def test_runs_with_other_folds_are_refused(two_runs, tmp_path):
    _, _, runs = two_runs
    shifted = tmp_path / "shifted"
    shutil.copytree(runs[1], shifted)
    oof = dict(load_oof(shifted))
    oof["folds"] = (oof["folds"] + 1) % 3  # a photo's member could then have seen its sender
    np.savez(shifted / "oof.npz", **oof)
    with pytest.raises(ValueError, match="other photos or folds"):
        combine_oof([runs[0], shifted])
    with pytest.raises(ValueError, match="at least two"):
        combine_oof([runs[0]])


@pytest.mark.slow
def test_the_shipped_ensemble_serves_the_averaged_cross_fitted_probabilities(two_runs, tmp_path):
    from services.trainer.model.calibrate import fit_temperature, softmax
    from services.trainer.pipelines.cv import load_final
    from shared.hedging.calibration import calibrate_by_group
    from shared.model_contract import INPUT_NAME, load_model
    from shared.preprocessing import preprocess_batch
    from services.trainer.data.dataset import load_photo

    taxonomy, data, runs = two_runs
    model_dir = ship_ensemble(runs, taxonomy, tmp_path / "models", "tiny-ensemble", data_dir=data)
    model = load_model(model_dir, prefer_gpu=False)
    card = model.card
    both = combine_oof(runs)
    t = fit_temperature(both["logits_0"], both["labels"])
    assert card.temperature == pytest.approx(t, rel=1e-9)
    expected_cal = calibrate_by_group(softmax(both["logits_0"], t), both["labels"], both["senders"], taxonomy)
    assert card.calibration.lam == expected_cal.lam and card.calibration.crc_unit == "group"
    assert [m["epochs"] for m in card.recipe["ensemble"]] == [TINY.epochs, OTHER.epochs]
    assert card.data["calibration_source"]["kind"] == "cross-fitted"

    photos = [load_photo(p) for p in sorted((data / "images").glob("*.jpg"))[:6]]
    x = preprocess_batch(photos, card.preprocess)
    served = model.session.run(None, {INPUT_NAME: x})[0]
    with torch.no_grad():
        member_logits = [load_final(r, taxonomy)[0](torch.from_numpy(x)).numpy() for r in runs]
    mean_log_p = np.mean([_log_softmax(m) for m in member_logits], axis=0)
    np.testing.assert_allclose(served, softmax(mean_log_p, t), atol=1e-4)


@pytest.mark.slow
def test_members_with_other_served_crops_are_refused(two_runs, tmp_path):
    taxonomy, data, runs = two_runs
    other = tmp_path / "wide"
    shutil.copytree(runs[1], other)
    saved = torch.load(other / "final" / "checkpoint.pt", weights_only=False)
    saved["recipe"]["resize_size"] = 96
    torch.save(saved, other / "final" / "checkpoint.pt")
    with pytest.raises(ValueError, match="same served crop"):
        ship_ensemble([runs[0], other], taxonomy, tmp_path / "models", "x")
