"""The quick refit and feedback labels, on tiny generated photos (a real pretrained Lite0 at 64 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.trainer.data.dataset import PhotoRef
from services.trainer.fit.front_cache import FeatureStore
from services.trainer.model.net import GarmentNet
from shared.recipe import Recipe
from services.trainer.data.feedback import FeedbackItem, dataset_parts, feedback_label, feedback_photos
from services.trainer.errors import RefitError
from services.trainer.pipelines.refit import quick_refit
from shared.model_card import ModelCard, PreprocessConfig, sha256_file
from shared.model_contract import load_model
from shared.preprocessing import preprocess
from shared.photos import decode_photo
from shared.taxonomy import load_taxonomy
from tests.trainer.conftest import every_class_dataset, make_photo

pytestmark = pytest.mark.slow

TINY_QUICK = Recipe.from_overrides({"input_size": 64, "resize_size": 72, "batch_size": 16, "threads": 1,
                                    "epochs": 1}, preset="quick")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    taxonomy = load_taxonomy()
    root = tmp_path_factory.mktemp("refit")
    parts = dataset_parts(every_class_dataset(root, taxonomy), taxonomy, root / "split.json")
    return taxonomy, root, parts


def _feedback_photo(tmp_path, label_index: int, seed: int) -> PhotoRef:
    path = tmp_path / f"fb-{label_index}-{seed}.jpg"
    make_photo(label_index, np.random.default_rng(seed)).save(path, quality=90)
    return PhotoRef.of(path)


def test_feedback_label_is_a_leaf_or_skipped():
    taxonomy = load_taxonomy()
    photo = PhotoRef(Path(__file__), "0" * 64)
    confirmed = FeedbackItem(photo, "ann", answer_node="body.top.polo", correct=True)
    corrected = FeedbackItem(photo, "ann", answer_node="body.top.polo", correct=False, node="body.top.t-shirt")
    hedged = FeedbackItem(photo, "ann", answer_node="body.top", correct=True)
    at_least = FeedbackItem(photo, "ann", answer_node="feet.shoes", correct=False, node="body")
    assert feedback_label(confirmed, taxonomy) == "body.top.polo"
    assert feedback_label(corrected, taxonomy) == "body.top.t-shirt"
    assert feedback_label(hedged, taxonomy) is None
    assert feedback_label(at_least, taxonomy) is None
    photos, skipped = feedback_photos([confirmed, hedged, corrected], taxonomy)
    assert skipped == 1 and [p.leaf for p in photos] == ["body.top.t-shirt"]  # last verdict on a photo wins
    with pytest.raises(RefitError, match="body.top.cape"):
        feedback_label(FeedbackItem(photo, "ann", "body.top", False, "body.top.cape"), taxonomy)


def test_feature_store_reuses_cached_activations_and_matches_the_front(setup, tmp_path):
    taxonomy, root, parts = setup
    net = GarmentNet("efficientnet-lite0", 17, 64, TINY_QUICK.split_block)
    net.freeze_front()
    cfg = PreprocessConfig(input_size=64, resize_size=72)
    photos = [p.photo for p in parts["val"][:5]]
    first = FeatureStore(tmp_path / "cache", net, TINY_QUICK, cfg)
    plain, aug = first.plain(photos), first.augmented(photos, 2)
    assert first.computed == 5 + 10 and plain.shape[0] == 5 and aug.shape[:2] == (5, 2)
    second = FeatureStore(tmp_path / "cache", net, TINY_QUICK, cfg)
    assert second.key == first.key
    np.testing.assert_array_equal(second.plain(photos), plain)
    np.testing.assert_array_equal(second.augmented(photos, 2), aug)
    assert second.computed == 0
    assert not np.array_equal(aug[:, 0], aug[:, 1]), "two augmented views must differ"
    import torch

    x = preprocess(decode_photo(photos[0].path.read_bytes()), cfg)[None]
    with torch.no_grad():
        expected = net.front(torch.from_numpy(x)).numpy()[0]
    np.testing.assert_allclose(plain[0].astype(np.float32), expected, atol=2e-2, rtol=1e-2)
    other = Recipe.from_overrides({"input_size": 64, "resize_size": 72, "rotation_degrees": 10.0}, preset="quick")
    assert FeatureStore(tmp_path / "cache", net, other, cfg).key != first.key, "augmentation is part of the key"


def test_quick_refit_writes_a_candidate_with_feedback_photos(setup, tmp_path):
    taxonomy, root, parts = setup
    new = [_feedback_photo(tmp_path, 3, seed) for seed in (100, 101, 102)]
    items = [FeedbackItem(p, "bob", taxonomy.leaves[0], False, taxonomy.leaves[3]) for p in new]
    items.append(FeedbackItem(parts["val"][0].photo, "bob", taxonomy.leaves[0], True))  # a validation photo
    fb, skipped = feedback_photos(items, taxonomy)
    stages = []
    result = quick_refit(parts, fb, taxonomy, root / "models", "quick-1", tmp_path / "cache", TINY_QUICK,
                         progress=lambda stage, f: stages.append(stage))
    card = ModelCard.load(result.model_dir)
    assert card.version == "quick-1" and card.classes == taxonomy.leaves
    assert card.data["mode"] == "quick" and card.data["feedback_photos"] == 3, "the validation photo must not train"
    assert card.data["photos_per_split"]["train"] == len(parts["train"]) + 3
    assert card.taxonomy == taxonomy.raw and card.recipe["split_block"] == 16
    assert card.calibration.lam["crc"] and card.temperature > 0
    assert card.hashes["model.onnx"] == sha256_file(result.model_dir / "model.onnx")
    assert {"features", "fine-tune", "calibrate", "export", "done"} <= set(stages)
    probs = load_model(result.model_dir, prefer_gpu=False).run(np.zeros((2, 3, 64, 64), np.float32))
    assert probs.shape == (2, 17) and np.allclose(probs.sum(1), 1, atol=1e-4)
    # a second refit computes only what is new: nothing
    again = quick_refit(parts, fb, taxonomy, root / "models", "quick-2", tmp_path / "cache", TINY_QUICK)
    assert again.card.metrics["features_computed"] == 0
    assert result.card.metrics["features_computed"] > 0


def test_quick_refit_refuses_a_label_outside_the_taxonomy(setup, tmp_path):
    taxonomy, root, parts = setup
    from services.trainer.data.feedback import LabelledPhoto

    bad = [LabelledPhoto(parts["train"][0].photo, "body.top.cape", "eve", "feedback")]
    with pytest.raises(RefitError, match="body.top.cape"):
        quick_refit(parts, bad, taxonomy, root / "models", "quick-bad", tmp_path / "cache", TINY_QUICK)
