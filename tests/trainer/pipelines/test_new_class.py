"""A new class: a leaf added to the taxonomy, photos of it from feedback, a full retrain with a
bigger head; every version hedges on the tree it was trained with (a tiny generated taxonomy)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from shared.hedging.hedging import Hedger
from services.trainer.data.dataset import PhotoRef
from shared.recipe import Recipe
from services.trainer.data.feedback import LabelledPhoto
from services.trainer.errors import RefitError
from services.trainer.pipelines.refit import full_retrain
from shared.model_card import ModelCard, card_taxonomy
from shared.model_contract import load_model
from shared.taxonomy import Taxonomy, TaxonomyError
from tests.factories import make_tiny_model
from tests.trainer.conftest import make_photo, write_dataset

pytestmark = pytest.mark.slow

OLD = {"version": "tiny-1", "ignored_labels": ["Not sure"], "root": {
    "name": "garment", "display": "Garment", "icon": "🧺", "children": [
        {"name": "top", "display": "Top", "icon": "👕", "children": [
            {"name": "tee", "display": "Tee", "icon": "👕", "labels": ["Tee"]},
            {"name": "shirt", "display": "Shirt", "icon": "👔", "labels": ["Shirt"]}]},
        {"name": "feet", "display": "Footwear", "icon": "👟", "children": [
            {"name": "shoe", "display": "Shoe", "icon": "👟", "labels": ["Shoe"]},
            {"name": "boot", "display": "Boot", "icon": "🥾", "labels": ["Boot"]}]}]}}


def _with_cape() -> dict:
    raw = copy.deepcopy(OLD)
    raw["version"] = "tiny-2"
    raw["root"]["children"][0]["children"].append({"name": "cape", "display": "Cape", "icon": "🦸", "labels": ["Cape"]})
    return raw


def test_a_new_leaf_gets_a_bigger_head_and_older_versions_keep_their_tree(tmp_path):
    old, new = Taxonomy(OLD), Taxonomy(_with_cape())
    data = write_dataset(tmp_path / "data", ["Tee", "Shirt", "Shoe", "Boot"], per_label=8, senders=12)
    capes = []
    for i in range(8):  # the dataset has no cape: corrections to the new leaf bring its photos
        path = tmp_path / f"cape-{i}.jpg"
        make_photo(4, np.random.default_rng(50 + i)).save(path, quality=90)
        capes.append(LabelledPhoto(PhotoRef.of(path), "top.cape", f"person-{i % 3}", "feedback"))
    recipe = Recipe(input_size=64, resize_size=72, views=1, epochs=2, batch_size=16, threads=1)
    with pytest.raises(RefitError, match="top.cape"):  # the old tree has no such leaf
        full_retrain(data, capes, old, tmp_path / "models", "no", tmp_path / "split.json", recipe)

    result = full_retrain(data, capes, new, tmp_path / "models", "with-cape", tmp_path / "split.json", recipe)
    card = ModelCard.load(result.model_dir)
    assert card.classes == new.leaves and len(card.classes) == 5
    assert card.data["mode"] == "full" and card.data["feedback_photos"] == 8
    assert card.data["photos_per_split"]["train"] >= 8
    served = load_model(result.model_dir, prefer_gpu=False)  # as the inference worker loads it
    assert served.run(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 5)
    tree = card_taxonomy(card, old)  # whatever file is served, the version brings its own tree
    assert tree.digest == new.digest and card.taxonomy_digest == new.digest
    answer = Hedger(tree, card.calibration, card.classes).classify(
        [1.0 if leaf == "top.cape" else 0.0 for leaf in card.classes], 0.5)
    assert answer.top_predictions[0].name == "top.cape" and answer.top_predictions[0].display == "Cape"

    # a version trained before the leaf existed keeps hedging (and re-hedging its stored answers)
    # on its own four-leaf tree while the five-leaf file is served
    before = make_tiny_model(tmp_path / "models", "before-cape", taxonomy=old, input_size=32)
    before_card = ModelCard.load(before)
    before_card.taxonomy = old.raw
    before_card.save(before)
    before_card = ModelCard.load(before)
    assert card_taxonomy(before_card, new).digest == old.digest
    stored = Hedger(card_taxonomy(before_card, new), before_card.calibration, before_card.classes).classify(
        [0.25] * 4, 0.9)
    assert stored.answer.node.name in old.node_names
    legacy = before_card.model_copy(update={"taxonomy": None})  # an older card without its tree
    with pytest.raises(TaxonomyError, match="does not carry it"):
        card_taxonomy(legacy, new)
    assert card_taxonomy(legacy, old).digest == old.digest
