"""A cross-fitted model recipe run on labelled photos (what a training job does to relearn the
served kind): folds by person, every member's fold and final networks, one cross-fitted version
whose card records the recipe; a partial label trains without a leaf."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from services.trainer.data.dataset import PhotoRef
from services.trainer.data.feedback import LabelledPhoto
from services.trainer.pipelines.crossfit import fit_model_recipe
from shared.model_card import TRAINED_ON_ALL, ModelCard
from shared.model_contract import load_model
from shared.photos import decode_photo
from shared.preprocessing import preprocess
from shared.recipe import CalibrationRecipe, ModelRecipe, Recipe
from shared.taxonomy import load_taxonomy
from tests.trainer.conftest import write_dataset

pytestmark = pytest.mark.slow

MEMBER = dict(input_size=64, resize_size=72, views=1, epochs=1, batch_size=16, threads=1)
PAIR = ModelRecipe([Recipe(split_block=14, **MEMBER), Recipe(split_block=15, **MEMBER)],
                   calibration=CalibrationRecipe("cross-fitted", folds=3, crc_unit="sender", angles=(0, 30)),
                   train_on_served=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    taxonomy = load_taxonomy()
    leaves = taxonomy.leaves[:6]
    data = write_dataset(tmp_path_factory.mktemp("xfit"), [taxonomy.nodes[leaf].labels[0] for leaf in leaves],
                         per_label=6, senders=9)
    out = []
    for n, path in enumerate(sorted((data / "images").glob("*.jpg"))):
        leaf = leaves[int(path.stem.split("-")[1])]
        out.append(LabelledPhoto(PhotoRef.of(path), leaf, f"s{n % 9}"))
    # two feedback photos known only as "somewhere under the leaf's parent" (a Yes to a hedged answer)
    parent = taxonomy.nodes[out[0].leaf].parent
    out += [LabelledPhoto(p.photo, parent, "helper", "feedback") for p in out[:2]]
    return taxonomy, out


@pytest.fixture(scope="module")
def candidate(photos, tmp_path_factory):
    taxonomy, labelled = photos
    root = tmp_path_factory.mktemp("xfit-out")
    stages = []
    card = fit_model_recipe(PAIR, labelled, taxonomy, root / "cache", root / "models", "pair-1",
                            lambda stage, fraction, message: stages.append((stage, fraction)))
    return taxonomy, labelled, root, card, stages


def test_the_candidate_is_the_recipes_kind_cross_fitted_on_out_of_fold_predictions(candidate):
    taxonomy, labelled, root, card, _ = candidate
    assert card.model_recipe == PAIR, "the card records the recipe that made it"
    assert card.architecture == "efficientnet-lite0+efficientnet-lite0"
    source = card.data["calibration_source"]
    assert source["kind"] == "cross-fitted" and source["folds"] == 3 and source["crc_unit"] == "sender"
    assert source["photos"] == len(labelled) and source["partial_label_photos"] == 2, "partial labels calibrate too"
    assert card.calibration.n_partial == 2
    assert card.data["partial_label_photos"] == 2 and card.data["feedback_photos"] == 2
    assert card.data["trained_on"] == TRAINED_ON_ALL and card.calibration.crc_unit == "sender"
    model = load_model(root / "models" / "pair-1")
    x = np.stack([preprocess(decode_photo(p.photo.path.read_bytes()), model.card.preprocess) for p in labelled[:4]])
    probs = model.run(x)
    assert probs.shape == (4, len(taxonomy.leaves)) and np.allclose(probs.sum(1), 1, atol=1e-4)


def test_progress_names_every_member_and_fold_and_only_grows(candidate):
    *_, stages = candidate
    names = {stage for stage, _ in stages}
    for member in (1, 2):
        for fold in (1, 2, 3):
            assert any(f"member {member}/2" in s and f"fold {fold}/3" in s for s in names), (member, fold)
        assert any(f"member {member}/2" in s and "final network" in s for s in names)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1


def test_a_quick_run_reads_every_front_from_the_cache_and_records_the_untrimmed_recipe(candidate, tmp_path):
    from services.trainer.jobs.modes import quick_recipe

    taxonomy, labelled, root, card, _ = candidate
    quick = quick_recipe(PAIR)
    again = fit_model_recipe(quick, labelled, taxonomy, root / "cache", tmp_path, "pair-2", recorded=PAIR,
                             views_per_epoch=1, curve_photos=8)
    assert card.metrics["features_computed"] > 0 and again.metrics["features_computed"] == 0
    assert again.model_recipe == PAIR, "the next job relearns the kind, not a trim of a trim"
    assert again.data["fitted_with"]["members"][0]["views"] == 0
    assert again.data["fitted_with"]["views_per_epoch"] == 1
    # where the time went: fronts per member, every fit (per member and fold), calibration, export
    fits = again.metrics["fits"]
    assert [(f["member"], f["fold"]) for f in fits] == [(m, f) for m in (0, 1) for f in (0, 1, 2, None)]
    assert all(f["views"] == 1 and f["seconds"] >= 0 for f in fits)
    assert {f["photos"] for f in fits if f["fold"] is None} == {len(labelled)}
    stages = again.metrics["stage_seconds"]
    assert {"calibrate", "export"} <= stages.keys() and sum("fronts" in k for k in stages) == 2
    assert sum("fold" in k for k in stages) == 6


def test_a_job_runs_the_active_versions_recipe_again(candidate):
    """``full`` and ``quick`` default to the active card's model recipe; quick trims it to minutes."""
    from services.trainer.jobs.modes import QUICK_MAX_FOLDS, job_recipe, quick_recipe
    from shared.schemas import TrainingJobCreate

    *_, root, card, _ = candidate
    ctx = SimpleNamespace(request=TrainingJobCreate(mode="full", recipe={"epochs": "4"}),
                          active_model=lambda: ("pair-1", root / "models" / "pair-1"))
    kind = job_recipe(ctx, "full")
    assert kind.cross_fitted and [m.split_block for m in kind.members] == [14, 15]
    assert all(m.epochs == 4 for m in kind.members), "a job's overrides reach every member"
    quick = quick_recipe(kind)
    assert [m.split_block for m in quick.members] == [14, 15] and all(m.views == 0 for m in quick.members)
    assert quick.calibration.folds == min(3, QUICK_MAX_FOLDS) and quick.calibration.crc_unit == "sender"
    preset = SimpleNamespace(request=TrainingJobCreate(mode="full", recipe_preset="gpu"), active_model=ctx.active_model)
    assert job_recipe(preset, "full").members[0].fine_tune == "full", "a named preset wins"
    none = SimpleNamespace(request=TrainingJobCreate(mode="quick"), active_model=lambda: None)
    assert job_recipe(none, "quick").members[0].split_block == 16, "no active version: the quick preset"
    assert ModelCard.load(root / "models" / "pair-1").model_recipe == card.model_recipe


def test_a_warm_started_run_continues_the_start_version_and_calibrates_on_new_people_only(
        candidate, tmp_path, monkeypatch):
    """``quick`` continues the served version: at learning rate 0 its candidate *is* the start
    version (every network loaded from the start's graph); the photos the start learned are no
    calibration evidence, the new feedback people are, once there are enough of them."""
    from services.trainer.jobs.modes import quick_recipe
    from services.trainer.pipelines import crossfit
    from services.trainer.pipelines.crossfit import WarmStart, learned_feedback, out_of_fold_answers, photo_key

    taxonomy, labelled, root, card, _ = candidate
    start = WarmStart(root / "models" / "pair-1", lr_scale=0.0)
    new = [LabelledPhoto(p.photo, p.leaf, f"new{n % 3}", "feedback") for n, p in enumerate(labelled[3:12])]
    photos = labelled + new
    kept = fit_model_recipe(quick_recipe(PAIR), photos, taxonomy, root / "cache", tmp_path, "pair-3", recorded=PAIR,
                            views_per_epoch=1, curve_photos=8, start=start)
    assert kept.data["warm_start"] == {"from": "pair-1", "lr_scale": 0.0, "oof_photos": 9, "oof_people": 3}
    assert kept.data["calibration_source"]["kept_from"] == "pair-1", "3 new people: too few to refit calibration"
    assert kept.temperature == card.temperature and kept.calibration == card.calibration
    x = np.stack([preprocess(decode_photo(p.photo.path.read_bytes()), card.preprocess) for p in labelled[:6]])
    served, continued = load_model(root / "models" / "pair-1"), load_model(tmp_path / "pair-3")
    np.testing.assert_allclose(continued.run(x), served.run(x), atol=1e-5)
    assert learned_feedback(tmp_path / "pair-3") == {photo_key(p) for p in photos if p.source == "feedback"}
    assert kept.data["learned_feedback_photos"] == 2 + 9, "the helper's 2 photos and the 9 new ones"
    assert learned_feedback(root / "models" / "pair-1") == {photo_key(p) for p in labelled[:2]}, "the start's own"
    # the gate's out-of-fold evidence: from ImageNet every feedback photo, from a start the new ones only
    assert set(out_of_fold_answers(root / "models" / "pair-1")) == {photo_key(p) for p in labelled[:2]}
    answers = out_of_fold_answers(tmp_path / "pair-3")
    assert set(answers) == {photo_key(p) for p in new} and set(answers.values()) <= set(taxonomy.leaves)

    monkeypatch.setattr(crossfit, "MIN_CALIBRATION_PEOPLE", 3)
    refit = fit_model_recipe(quick_recipe(PAIR), photos, taxonomy, root / "cache", tmp_path, "pair-4", recorded=PAIR,
                             views_per_epoch=1, curve_photos=8, start=WarmStart(start.version_dir, 0.3))
    source = refit.data["calibration_source"]
    assert source["photos"] == 9 and source["senders"] == 3 and "kept_from" not in source
    assert "3 feedback people it never learned" in source["what"]


def test_a_quick_job_continues_the_active_version_when_it_is_of_the_jobs_kind(candidate):
    from services.trainer.jobs.modes import warm_start_of

    *_, root, card, _ = candidate
    ctx = SimpleNamespace(active_model=lambda: ("pair-1", root / "models" / "pair-1"), version_dir=lambda v: None,
                          settings=SimpleNamespace(quick_lr_scale=0.25))
    start = warm_start_of(ctx, PAIR)
    assert start.version_dir == root / "models" / "pair-1" and start.lr_scale == 0.25
    other = ModelRecipe([Recipe(split_block=13, **MEMBER), Recipe(split_block=15, **MEMBER)],
                        calibration=PAIR.calibration, train_on_served=True)
    assert warm_start_of(ctx, other) is None, "another split: its back is not the job's trainable part"
    assert warm_start_of(SimpleNamespace(active_model=lambda: None), PAIR) is None


def test_an_int8_active_version_is_continued_through_its_float_source(candidate, tmp_path):
    """A QDQ graph's convolutions read int8 weights: the job continues the float version it was made from."""
    from services.trainer.jobs.modes import warm_start_of
    from shared.model_card import Quantization

    *_, root, card, _ = candidate
    int8 = card.model_copy(update={"version": "pair-1-int8", "quantization": Quantization(
        source_version="pair-1", source_onnx_sha256="0" * 64, calibration_method="minmax", calibration_photos=8,
        calibration_selection="test")})
    int8.save(tmp_path)
    registered = {"pair-1": root / "models" / "pair-1"}
    ctx = SimpleNamespace(active_model=lambda: ("pair-1-int8", tmp_path), version_dir=registered.get,
                          settings=SimpleNamespace(quick_lr_scale=0.3))
    assert warm_start_of(ctx, PAIR).version_dir == root / "models" / "pair-1"
    gone = SimpleNamespace(active_model=ctx.active_model, version_dir=lambda version: None, settings=ctx.settings)
    assert warm_start_of(gone, PAIR) is None, "its float source deleted: from ImageNet, said in the log"
