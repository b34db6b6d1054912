"""``wardrobe cv``: folds grouped by sender, the front cached once for all folds, out-of-fold
predictions for every photo, a resumable run, and the network trained on everything."""

from __future__ import annotations

import builtins
import json
import shutil

import numpy as np
import pytest

from services.trainer.pipelines.cv import assign_folds, cross_validate, load_oof
from shared.recipe import Recipe
from tests.trainer.conftest import write_dataset

TINY = Recipe(input_size=64, resize_size=72, views=2, epochs=1, batch_size=16, threads=1)


def _senders_and_labels(n_senders: int = 23, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, size=n_senders)  # people send very different numbers of photos
    senders = [f"s{j}" for j, n in enumerate(sizes) for _ in range(n)]
    labels = rng.integers(0, 5, size=len(senders))
    return senders, labels


def _assert_grouped(senders: list[str], folds: np.ndarray, k: int) -> None:
    assert sorted(set(folds.tolist())) == list(range(k)), "every fold holds photos"
    fold_of_sender: dict[str, int] = {}
    for s, f in zip(senders, folds):
        assert fold_of_sender.setdefault(s, int(f)) == f, f"sender {s} is in two folds"


@pytest.mark.parametrize("k", [2, 5])
def test_no_sender_in_two_folds(k):
    senders, labels = _senders_and_labels()
    folds = assign_folds(senders, labels, k, seed=0)
    _assert_grouped(senders, folds, k)
    assert np.array_equal(folds, assign_folds(senders, labels, k, seed=0)), "deterministic"


def test_no_sender_in_two_folds_without_sklearn(monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    senders, labels = _senders_and_labels(seed=1)
    folds = assign_folds(senders, labels, 5)
    _assert_grouped(senders, folds, 5)
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 29, "greedy split balances photo counts within one sender's size"


def test_more_folds_than_senders_is_refused():
    with pytest.raises(ValueError, match="at least 5 senders"):
        assign_folds(["a", "a", "b", "c"], np.zeros(4, dtype=int), 5)


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    root = tmp_path_factory.mktemp("cv")
    labels = [taxonomy.nodes[leaf].labels[0] for leaf in taxonomy.leaves[:6]]
    data = write_dataset(root / "data", labels, per_label=6, senders=9,
                         extra_rows=[("img-00-000", "0", "Not sure")])  # a non-class row is left out
    run = cross_validate(data, taxonomy, root / "run", TINY, folds=3)
    return taxonomy, data, root / "run", run


@pytest.mark.slow
def test_every_photo_is_predicted_once_by_a_model_that_never_saw_its_sender(cv_run):
    _, _, out, run = cv_run
    oof = load_oof(out)
    assert len(oof["ids"]) == 36 and set(oof["folds"].tolist()) == {0, 1, 2}
    assert oof["kids"].dtype == bool and not oof["kids"].any()  # images.csv's kids column, for the audiences
    seen = np.zeros(len(oof["ids"]), dtype=int)
    for k in range(3):
        fold = np.load(out / "folds" / f"fold{k}.npz")
        seen[fold["idx"]] += 1
        assert (oof["folds"][fold["idx"]] == k).all()
        held_senders = set(oof["senders"][fold["idx"]].tolist())
        trained_senders = set(oof["senders"][oof["folds"] != k].tolist())
        assert not held_senders & trained_senders
        assert np.allclose(oof["logits_0"][fold["idx"]], fold["logits_0"])
    assert (seen == 1).all()
    for angle in (0, -30, 30):
        assert np.isfinite(oof[f"logits_{angle}"]).all() and np.abs(oof[f"logits_{angle}"]).sum(1).min() > 0
    assert not np.allclose(oof["logits_0"], oof["logits_30"]), "rotated crops are really rotated"
    assert run.final_checkpoint is not None and run.final_checkpoint.is_file()


@pytest.mark.slow
def test_the_one_training_core_gives_the_out_of_fold_predictions_of_the_old_cv(cv_run):
    """``cv_golden.npz``: this run's out-of-fold logits recorded with the code before the trainer
    was reorganised (commit 59974cf: cv.py's own fine-tuning loop); the shared ``fit_on_views``
    must reproduce them (same folds, same batches, same steps). On the machine that recorded it they
    are bit-identical; another CPU's kernels (AMD EPYC with AVX-512 here) drift through the training
    steps: max |Δlogit| 0.17, mean 0.03. A real change of the loop moves them 35× more: another
    seed, batch size 8 or a second epoch gave max 6.4-22, mean 1.1-8.1
    (``bench/cv_golden_drift.py``, 2026-12-07). So the bound sits between the two: max 1, mean 0.25."""
    from pathlib import Path

    _, _, out, _ = cv_run
    golden = np.load(Path(__file__).parent / "cv_golden.npz")
    oof = load_oof(out)
    assert np.array_equal(oof["ids"], golden["ids"]) and np.array_equal(oof["folds"], golden["folds"])
    for key in ("logits_0", "logits_30"):
        drift = np.abs(oof[key] - golden[key])
        assert drift.max() < 1.0 and drift.mean() < 0.25, (drift.max(), drift.mean())
        assert (oof[key].argmax(1) == golden[key].argmax(1)).mean() > 0.95


@pytest.mark.slow
def test_rerun_reuses_the_cache_and_finished_folds(cv_run, caplog):
    taxonomy, data, out, run = cv_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "folds").iterdir()}
    cache_mtime = (out / "cache" / "served_0.npy").stat().st_mtime_ns
    caplog.set_level("INFO")
    again = cross_validate(data, taxonomy, out, TINY, folds=3)
    assert "reusing cached front activations" in caplog.text
    assert (out / "cache" / "served_0.npy").stat().st_mtime_ns == cache_mtime
    assert {p.name: p.stat().st_mtime_ns for p in (out / "folds").iterdir()} == before
    assert np.array_equal(again.oof_logits[0], run.oof_logits[0])
    timing = json.loads((out / "timing.json").read_text())  # a resume keeps the stages' own times
    assert len(timing["fold_seconds"]) == 3 and timing["final_seconds"] > 0 and timing["cache_seconds"] > 0


@pytest.mark.slow
def test_the_cache_keys_name_what_the_activations_depend_on(cv_run):
    from dataclasses import replace

    from services.trainer.pipelines.cv import CV_ANGLES, _served_key, _view_key

    _, _, out, _ = cv_run
    served = json.loads((out / "cache" / "served.json").read_text())
    view0 = json.loads((out / "cache" / "view0.json").read_text())
    ids = load_oof(out)["ids"].tolist()
    assert _served_key(TINY, ids, CV_ANGLES) == served and _view_key(TINY, ids, 0) == view0
    assert _served_key(replace(TINY, views=3), ids, CV_ANGLES) == served, "more views keep the served crops"
    assert _view_key(replace(TINY, views=3), ids, 0) == view0, "... and the views already cached"
    assert _view_key(replace(TINY, color_jitter=0.5), ids, 0) != view0
    assert _served_key(replace(TINY, input_size=TINY.input_size + 32), ids, CV_ANGLES) != served
    assert _served_key(TINY, ids[:-1], CV_ANGLES) != served and _view_key(TINY, ids[:-1], 0) != view0
    assert _view_key(replace(TINY, epochs=5), ids, 0) == view0, "fine-tuning fields reuse the cache"


@pytest.mark.slow
def test_a_run_with_more_views_computes_only_the_new_ones(cv_run, tmp_path, caplog):
    from dataclasses import replace

    from services.trainer.pipelines.cv import build_cache
    from services.trainer.fit.loop import new_net
    from services.trainer.data.dataset import load_dataset
    from shared.model_card import PreprocessConfig

    taxonomy, data, out, _ = cv_run
    cache = tmp_path / "cache"
    shutil.copytree(out / "cache", cache)
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    samples = sorted(load_dataset(data, taxonomy, on_error="skip").classified, key=lambda s: s.image_id)
    more = replace(TINY, views=TINY.views + 1)
    cfg = PreprocessConfig(input_size=more.input_size, resize_size=more.resize_size)
    grown = build_cache(samples, new_net(more, len(taxonomy.leaves)), more, cfg, cache)
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert grown.views.shape[0] == TINY.views + 1
    assert all(after[name] == mtime for name, mtime in before.items() if name != "seconds.json")
    assert f"view{TINY.views}.npy" in after and f"view{TINY.views}.npy" not in before
    assert np.array_equal(grown.views[: TINY.views], np.stack(
        [np.load(out / "cache" / f"view{v}.npy") for v in range(TINY.views)]))


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["group", "sender", "photo"])
def test_shipped_model_is_calibrated_on_out_of_fold_predictions(cv_run, tmp_path, unit):
    """Cross-fitting: temperature and λ tables come from the OOF predictions (every sender scored
    by a model that never saw them), not from the final network's view of its own training photos."""
    from services.trainer.model.calibrate import fit_temperature, softmax
    from services.trainer.pipelines.cv import CALIBRATION_SOURCE, ship
    from shared.hedging.calibration import calibrate_for_unit
    from shared.model_card import ModelCard

    taxonomy, data, out, _ = cv_run
    model_dir = ship(out, taxonomy, tmp_path / "models", f"tiny-cv-{unit}", crc_unit=unit, data_dir=data)
    card = ModelCard.load(model_dir)
    oof = load_oof(out)
    t = fit_temperature(oof["logits_0"], oof["labels"])
    assert card.temperature == pytest.approx(t, rel=1e-9)
    probs = softmax(oof["logits_0"], t)
    expected = calibrate_for_unit(probs, oof["labels"], oof["senders"], taxonomy, unit)
    assert card.calibration.lam == expected.lam
    assert card.calibration.crc_unit == unit and card.calibration.n == 36
    source = card.data["calibration_source"]
    assert source["kind"] == CALIBRATION_SOURCE and source["folds"] == 3 and source["senders"] == 9
    assert card.data["photos"] == 36 and card.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert card.recipe["cv"]["folds"] == 3
    kind = card.model_recipe  # the served kind, as a training job will run it again
    assert kind.cross_fitted and kind.calibration.folds == 3 and kind.calibration.crc_unit == unit
    assert [m.architecture for m in kind.members] == [TINY.architecture] and kind.members[0].views == TINY.views


@pytest.mark.slow
def test_ship_refuses_an_unknown_unit(cv_run, tmp_path):
    from services.trainer.pipelines.cv import ship

    taxonomy, data, out, _ = cv_run
    with pytest.raises(ValueError, match="crc_unit"):
        ship(out, taxonomy, tmp_path, "x", crc_unit="person")
