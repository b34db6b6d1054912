"""The promotion gate and the recalibration from feedback, on tiny generated models and photos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from services.trainer.data.dataset import PhotoRef
from services.trainer.data.feedback import is_held_back, split_by_person
from services.trainer.jobs.gate import ProbabilityCache, compare, judge, per_person, score
from services.trainer.jobs.recalibrate import recalibrated_calibration, write_recalibrated_version
from services.trainer.pipelines.crossfit import LEARNED_FEEDBACK_FILE
from services.trainer.data.feedback import LabelledPhoto
from services.trainer.errors import RefitError
from shared.model_card import ModelCard, sha256_file
from tests.factories import make_tiny_model
from tests.trainer.conftest import make_photo


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[PhotoRef]:
    root = tmp_path_factory.mktemp("gate-photos")
    refs = []
    for i in range(60):
        path = root / f"p{i}.jpg"
        make_photo(i % 17, np.random.default_rng(i)).save(path, quality=90)
        refs.append(PhotoRef.of(path))
    return refs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-models")
    return make_tiny_model(root, "active", seed=1), make_tiny_model(root, "other", seed=7)


def _labelled_as_predicted(model_dir: Path, photos, cache, person=lambda i: f"p{i % 12}"):
    """Photos labelled with the model's own top-1: that model is always right on them."""
    card = ModelCard.load(model_dir)
    probs = cache.probabilities(model_dir, photos)
    return [LabelledPhoto(ref, card.classes[k], person(i)) for i, (ref, k) in enumerate(zip(photos, probs.argmax(1)))]


def test_compare_promotes_within_the_tolerance_and_names_what_is_worse():
    active = {"eval": {"n": 100, "top1": 0.80, "shortfall": 0.0}}
    ok, reason = compare({"eval": {"n": 100, "top1": 0.795, "shortfall": 0.005}}, active, 0.01, ["eval"])
    assert ok and "not worse" in reason
    ok, reason = compare({"eval": {"n": 100, "top1": 0.78, "shortfall": 0.0}}, active, 0.01, ["eval"])
    assert not ok and "top-1 on eval 0.780" in reason
    ok, reason = compare({"eval": {"n": 100, "top1": 0.85, "shortfall": 0.03}}, active, 0.01, ["eval"])
    assert not ok and "hedged shortfall on eval 0.030" in reason


def test_probabilities_are_cached_per_onnx_file_and_photo(models, photos, tmp_path):
    active, _ = models
    cache = ProbabilityCache(tmp_path / "p")
    first = cache.probabilities(active, photos[:10])
    assert first.shape == (10, 17) and np.allclose(first.sum(1), 1, atol=1e-4)
    assert len(list((tmp_path / "p").rglob("*.npy"))) == 10
    np.testing.assert_array_equal(cache.probabilities(active, photos[:10]), first)


def test_the_gate_keeps_a_worse_candidate_and_promotes_an_equal_one(models, photos, tmp_path):
    active, other = models
    cache = ProbabilityCache(tmp_path / "p")
    labelled = _labelled_as_predicted(active, photos, cache)
    sets = {"eval": labelled[:40], "feedback": labelled[40:]}
    worse = judge(other, ("active", active), sets, cache, tolerance=0.01, min_feedback=30, min_people=5)
    assert not worse.promote and "top-1 on eval" in worse.reason and "not decisive: feedback" in worse.reason
    assert worse.active["eval"]["top1"] == 1.0 and worse.candidate["eval"]["top1"] < 0.9
    assert set(worse.active["eval"]["hedged"]) == {"0.8", "0.9", "0.95", "0.98", "0.99"}
    # 40 photos allow 5 errors only at 0.8 (8) and 0.9 (4 < 5: not judged): one miss is not evidence
    assert worse.active["eval"]["shortfall_targets"] == [0.8]
    same = judge(active, ("active", active), sets, cache, tolerance=0.0, min_feedback=10, min_people=5)
    assert same.promote and "feedback" in same.reason
    assert {k: {f: v for f, v in d.items() if f != "per_person"} for k, d in same.candidate.items()} == same.active
    assert same.candidate["eval"]["per_person"]["people"] == 12 and same.candidate["eval"]["per_person"]["lo"] == 0
    first = judge(active, None, sets, cache, 0.01, 30)
    assert first.promote and "no version is active" in first.reason


def test_people_are_held_back_by_a_stable_hash():
    people = [f"user-{i}" for i in range(400)]
    held = [p for p in people if is_held_back(p, 0.2)]
    assert 50 < len(held) < 110 and held == [p for p in people if is_held_back(p, 0.2)]
    photos = [LabelledPhoto(PhotoRef(Path("x"), f"{i:064x}"), "feet.shoes", people[i % 40]) for i in range(200)]
    learn, back = split_by_person(photos, 0.3)
    assert {p.person for p in learn}.isdisjoint({p.person for p in back}) and len(learn) + len(back) == 200


def test_recalibration_writes_a_version_sharing_the_onnx_file(models, photos, tmp_path):
    active, _ = models
    cache = ProbabilityCache(tmp_path / "p")
    labelled = _labelled_as_predicted(active, photos, cache)
    calibration, facts = recalibrated_calibration(active, labelled, cache, min_photos=20)
    assert calibration.n == 60 and facts["photos"] == 60 and facts["people"] == 12 and facts["top1_on_feedback"] == 1.0
    learned = active / LEARNED_FEEDBACK_FILE  # the feedback its weights learned travels with them
    learned.write_text("0123456789abcdef\n")
    try:
        out = write_recalibrated_version(active, tmp_path / "out", "active-recal", calibration, facts)
    finally:
        learned.unlink()
    assert (out / LEARNED_FEEDBACK_FILE).read_text() == "0123456789abcdef\n"
    card, old = ModelCard.load(out), ModelCard.load(active)
    assert card.version == "active-recal" and card.data["recalibrated_from"] == "active"
    assert card.calibration == calibration != old.calibration
    assert sha256_file(out / "model.onnx") == old.hashes["model.onnx"] == card.hashes["model.onnx"]
    assert os.stat(out / "model.onnx").st_ino == os.stat(active / "model.onnx").st_ino  # a hard link here
    # the top-1 is right on every photo, so the recalibrated promise answers leaves more often
    before, after = score(active, labelled, cache), score(out, labelled, cache)
    assert after["top1"] == before["top1"] and after["info_gain"]["0.9"] >= before["info_gain"]["0.9"]
    by_person, facts = recalibrated_calibration(active, labelled, cache, min_photos=20, unit="sender")
    assert by_person.crc_unit == "sender" and by_person.n_senders == 12 and facts["crc_unit"] == "sender"
    with pytest.raises(RefitError, match="at least 100"):
        recalibrated_calibration(active, labelled, cache, min_photos=100)


def test_recalibration_counts_a_yes_to_a_hedged_answer_as_a_partial_label(models, photos, tmp_path):
    """Feedback naming the parent of the model's own top-1 (the truth is under it): calibration
    evidence too, counted as partial labels; a node the model's tree lacks is skipped."""
    from dataclasses import replace

    from services.trainer.jobs.gate import card_taxonomy

    active, _ = models
    cache = ProbabilityCache(tmp_path / "p")
    labelled = _labelled_as_predicted(active, photos, cache)
    taxonomy = card_taxonomy(ModelCard.load(active))
    partial = [replace(p, leaf=taxonomy.nodes[p.leaf].parent) if i % 3 == 0 and taxonomy.nodes[p.leaf].parent
               else p for i, p in enumerate(labelled)]
    partial.append(replace(labelled[0], leaf="body.cape"))
    calibration, facts = recalibrated_calibration(active, partial, cache, min_photos=20)
    n_inner = sum(not taxonomy.nodes[p.leaf].is_leaf for p in partial if p.leaf in taxonomy.nodes)
    assert n_inner > 0 and facts["partial_label_photos"] == calibration.n_partial == n_inner
    assert calibration.n == 60 and facts["skipped_unknown_node"] == 1


def test_a_version_trained_on_every_photo_is_not_judged_on_the_split_it_learned_from(models, photos, tmp_path):
    """The shipped model of ``wardrobe cv|ensemble`` learned from the evaluation split too, so its
    score there is no yardstick: only the held-back people's feedback may decide."""
    import shutil

    active, other = models
    everything = tmp_path / "everything"
    shutil.copytree(active, everything)
    card = ModelCard.load(everything)
    card.model_copy(update={"data": {**card.data, "trained_on": "all labelled photos"}}).save(everything)
    cache = ProbabilityCache(tmp_path / "p")
    labelled = _labelled_as_predicted(active, photos, cache)
    sets = {"eval": labelled[:40], "feedback": labelled[40:]}  # 20 feedback photos

    # the candidate is worse on eval, but eval cannot decide, and 20 < 30 feedback photos
    blocked = judge(other, ("pair", everything), sets, cache, tolerance=0.01, min_feedback=30, min_people=5)
    assert not blocked.promote and "not decisive (pair learned from it)" in blocked.reason
    # with enough held-back feedback, feedback alone decides; eval is still reported
    decided = judge(other, ("pair", everything), sets, cache, tolerance=0.01, min_feedback=10, min_people=5)
    assert not decided.promote and "top-1 on feedback" in decided.reason and "top-1 on eval" not in decided.reason
    assert "eval, which pair learned from" in decided.reason and decided.active["eval"]["top1"] == 1.0
    # the same candidate against an active version that held the split out is judged on it
    held_out = judge(other, ("active", active), sets, cache, tolerance=0.01, min_feedback=10, min_people=5)
    assert "top-1 on eval" in held_out.reason


def test_per_person_counts_each_person_once_and_its_interval_narrows_with_people():
    # one person with 90 photos the candidate gets right and 9 people with one photo it gets wrong
    diff = np.array([1.0] * 90 + [-1.0] * 9)
    persons = ["big"] * 90 + [f"p{i}" for i in range(9)]
    judged = per_person(diff, persons)
    assert judged["people"] == 10 and judged["mean"] == pytest.approx(-0.8) and judged["largest_share"] > 0.9
    assert judged["lo"] <= judged["mean"] <= judged["hi"] and judged == per_person(diff, persons), "seeded"
    rng = np.random.default_rng(0)
    few, many = ([f"q{i}" for i in range(n) for _ in range(4)] for n in (6, 60))
    wide = per_person(rng.choice([-1.0, 0.0, 1.0], len(few)), few)
    narrow = per_person(rng.choice([-1.0, 0.0, 1.0], len(many)), many)
    assert narrow["hi"] - narrow["lo"] < wide["hi"] - wide["lo"]


def test_too_few_people_or_too_wide_an_interval_is_insufficient_evidence():
    active = {"feedback": {"n": 40, "top1": 0.80}}
    sure = {"people": 40, "mean": 0.02, "lo": -0.005, "hi": 0.04, "level": 0.9}
    ok, reason = compare({"feedback": {"n": 40, "top1": 0.82, "per_person": sure}}, active, 0.01, ["feedback"])
    assert ok and "per person +0.020" in reason
    unsure = {**sure, "people": 6, "lo": -0.2, "hi": 0.25}
    ok, reason = compare({"feedback": {"n": 40, "top1": 0.82, "per_person": unsure}}, active, 0.01, ["feedback"])
    assert not ok and reason.startswith("insufficient evidence") and "over 6 people" in reason


def test_the_gate_needs_enough_people_before_anything_decides(models, photos, tmp_path):
    active, other = models
    cache = ProbabilityCache(tmp_path / "p")
    labelled = _labelled_as_predicted(active, photos, cache, person=lambda i: f"p{i % 3}")  # 3 people
    decision = judge(other, ("active", active), {"eval": labelled}, cache, tolerance=0.01, min_feedback=1)
    assert not decision.promote and decision.reason.startswith("insufficient evidence")
    assert judge(other, ("active", active), {"eval": labelled}, cache, 0.01, 1, min_people=3).candidate
    twelve = _labelled_as_predicted(active, photos, cache)  # 12 people: below the default minimum
    assert judge(other, ("active", active), {"eval": twelve}, cache, 0.01, 1).reason.startswith("insufficient")
    from services.trainer.config import TrainerSettings
    from services.trainer.jobs.gate import GATE_MIN_PEOPLE

    assert TrainerSettings.model_fields["gate_min_people"].default == GATE_MIN_PEOPLE > 12


def test_a_yes_to_a_hedged_answer_counts_in_the_gates_set(models, photos, tmp_path):
    """A partial label (an inner node) judges top-1 by "is the top leaf under that node"."""
    active, _ = models
    cache = ProbabilityCache(tmp_path / "p")
    exact = _labelled_as_predicted(active, photos[:20], cache)
    parents = [LabelledPhoto(p.photo, p.leaf.rsplit(".", 1)[0], p.person) for p in exact]
    scored = score(active, parents, cache)
    assert scored["n"] == 20 and scored["partial_labels"] == 20 and scored["top1"] == 1.0
    assert all(0.0 <= v <= 1.0 for v in scored["hedged"].values())


def test_the_gates_evidence_records_figures_per_audience(models, photos, tmp_path):
    """[J2]: beside the decision, top-1 and hedged accuracy for children's and adults' clothes and for
    small senders, photo- and person-weighted; a photo the active version gets wrong moves only its
    own audience."""
    active, other = models
    cache = ProbabilityCache(tmp_path / "p")
    right = _labelled_as_predicted(active, photos, cache)
    card = ModelCard.load(active)
    labelled = []
    for i, p in enumerate(right[:40]):  # photos 0-9 are children's clothes, labelled wrongly
        kids = i < 10
        leaf = card.classes[(card.classes.index(p.leaf) + 1) % len(card.classes)] if kids else p.leaf
        labelled.append(LabelledPhoto(p.photo, leaf, p.person, kids=kids))
    decision = judge(other, ("active", active), {"eval": labelled}, cache, tolerance=0.01, min_feedback=1, min_people=5)
    seen = decision.active["eval"]["audience"]
    assert seen["kids"]["n"] == 10 and seen["kids"]["photos"]["top1"] == 0.0
    assert seen["adults"]["photos"]["top1"] == 1.0 and seen["adults"]["people"]["top1"] == pytest.approx(1.0)
    assert seen["all"]["photos"]["top1"] == pytest.approx(decision.active["eval"]["top1"]) == 0.75
    assert seen["small"]["n"] == 40 and "big" not in seen  # 12 people, none above the threshold
    assert set(seen["adults"]["hedged"]) == {"0.8", "0.9", "0.95", "0.98", "0.99"}
    assert set(decision.candidate["eval"]["audience"]) == set(seen)


def test_people_the_candidate_learned_from_count_where_its_recipe_predicted_them_out_of_fold(models, photos, tmp_path):
    """Four held-back people cannot show that a candidate loses at most a point; twenty more people
    whom its recipe predicted out of fold (and the active version never learned) can. A photo the
    active version learned is no evidence, and a version without out-of-fold answers adds none."""
    import json
    import shutil

    from services.trainer.jobs.gate import out_of_fold_evidence
    from services.trainer.pipelines.crossfit import OUT_OF_FOLD_FILE, photo_key

    active, other = models
    cache = ProbabilityCache(tmp_path / "p")
    by_active = _labelled_as_predicted(active, photos, cache, person=lambda i: f"held{i % 4}")
    by_other = _labelled_as_predicted(other, photos, cache, person=lambda i: f"held{i % 4}")
    # held back: each person's photos alternately labelled as either version answers (neither is sure better)
    held = [(by_active if i % 2 else by_other)[i] for i in range(20)]
    classes = ModelCard.load(active).classes
    # learned from: 20 people (2 photos each) the recipe got right out of fold where the active version is wrong
    learned = [LabelledPhoto(p.photo, classes[(classes.index(p.leaf) + 1) % len(classes)], f"oof{i // 2}",
                             source="feedback") for i, p in enumerate(by_active[20:60])]
    candidate = tmp_path / "candidate"
    shutil.copytree(other, candidate)
    kwargs = dict(tolerance=0.01, min_feedback=10, min_people=4)

    alone = judge(candidate, ("active", active), {"feedback": held}, cache, **kwargs)
    assert not alone.promote and alone.reason.startswith("insufficient evidence") and "over 4 people)" in alone.reason

    (candidate / OUT_OF_FOLD_FILE).write_text(json.dumps({photo_key(p): p.leaf for p in learned}))
    evidence = out_of_fold_evidence(candidate, active, learned)
    assert evidence == (learned, [p.leaf for p in learned])
    pooled = judge(candidate, ("active", active), {"feedback": held}, cache, out_of_fold=evidence, **kwargs)
    assert pooled.promote and "over 24 people: 4 held back, 20 out of fold" in pooled.reason
    figures = pooled.candidate["feedback"]
    assert figures["out_of_fold"] == {"n": 40, "people": 20, "top1": 1.0}
    assert pooled.active["feedback"]["out_of_fold"]["top1"] == 0.0
    assert figures["per_person_held_back"] == alone.candidate["feedback"]["per_person"]
    assert figures["per_person"]["lo"] > 0

    # the photos an active version learned are no evidence about it; nor is a version without the file
    knows = tmp_path / "knows"
    shutil.copytree(active, knows)
    (knows / LEARNED_FEEDBACK_FILE).write_text("".join(f"{photo_key(p)}\n" for p in learned[:30]))
    assert out_of_fold_evidence(candidate, knows, learned)[0] == learned[30:]
    assert out_of_fold_evidence(other, active, learned) == ([], [])


def test_a_shortfall_within_sampling_noise_is_no_evidence_against_a_candidate(models, photos, tmp_path):
    """Two or three photos short of 0.9 on ~110 photos is chance (a binomial standard error of 2.8
    points); a promise broken well beyond that keeps the candidate out."""
    from services.trainer.jobs.gate import SHORTFALL_NOISE_Z

    active = {"feedback": {"n": 110, "top1": 0.80, "shortfall": 0.007, "shortfall_beyond_noise": 0.0}}
    noisy = {"n": 110, "top1": 0.82, "shortfall": 0.027, "shortfall_beyond_noise": 0.0}
    ok, reason = compare({"feedback": noisy}, active, 0.01, ["feedback"])
    assert ok and "hedged shortfall beyond sampling noise on feedback 0.000 vs 0.000 (raw 0.027 vs 0.007)" in reason
    broken = {**noisy, "shortfall": 0.12, "shortfall_beyond_noise": 0.07}
    ok, reason = compare({"feedback": broken}, active, 0.01, ["feedback"])
    assert not ok and "beyond sampling noise on feedback 0.070 > active 0.000" in reason

    # what score() records: the band per judged target, and the shortfall beyond it
    cache = ProbabilityCache(tmp_path / "p")
    scored = score(models[0], _labelled_as_predicted(models[0], photos, cache), cache)
    n = scored["n"]
    assert scored["shortfall_targets"] == [0.8, 0.9][: len(scored["shortfall_targets"])]
    for t in scored["shortfall_targets"]:
        assert scored["shortfall_noise"][str(t)] == pytest.approx(SHORTFALL_NOISE_Z * np.sqrt(t * (1 - t) / n))
    worst = max(t - scored["hedged"][str(t)] - scored["shortfall_noise"][str(t)] for t in scored["shortfall_targets"])
    assert scored["shortfall_beyond_noise"] == pytest.approx(max(0.0, worst))
