from __future__ import annotations

import copy

import numpy as np
import pytest

from shared.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

DATASET_LABELS = ["T-Shirt", "Longsleeve", "Pants", "Shoes", "Shirt", "Dress", "Outwear", "Shorts", "Skirt",
                  "Hat", "Polo", "Undershirt", "Blazer", "Hoodie", "Body", "Top", "Blouse"]


def small_tree() -> dict:
    return {"version": "t", "ignored_labels": ["Skip"], "root": {
        "name": "garment", "display": "Garment", "icon": "g", "children": [
            {"name": "body", "display": "Body", "icon": "b", "children": [
                {"name": "a", "display": "A", "icon": "a", "labels": ["A"]},
                {"name": "b", "display": "B", "icon": "b", "labels": ["B"]}]},
            {"name": "feet", "display": "Feet", "icon": "f", "labels": ["F"]}]}}


def test_bundled_taxonomy_maps_every_dataset_label_to_one_leaf():
    tax = load_taxonomy()
    assert sorted(tax.label_to_leaf) == sorted(DATASET_LABELS)
    assert len(tax.leaves) == 17
    for label in ("Not sure", "Other", "Skip"):
        assert tax.leaf_for_label(label) is None
    assert all(tax.nodes[n].display and tax.nodes[n].icon for n in tax.node_names)
    assert max(tax.nodes[n].depth for n in tax.leaves) == 3  # three levels where natural


def test_leaf_matrix_and_info_gain():
    tax = Taxonomy(small_tree())
    assert tax.node_names == ["", "body", "body.a", "body.b", "feet"]
    assert tax.leaves == ["body.a", "body.b", "feet"]
    np.testing.assert_array_equal(tax.leaf_matrix[1], [1, 1, 0])
    np.testing.assert_allclose(tax.info_gain, [0, np.log2(3) - 1, np.log2(3), np.log2(3), np.log2(3)])
    assert tax.ancestors("body.a") == ["body.a", "body", ""]


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["root"]["children"][0]["children"].append(
        {"name": "a", "display": "A2", "icon": "x", "labels": ["Z"]}), "duplicate node name 'body.a'"),
    (lambda t: t["root"]["children"][1]["labels"].append("A"), "label 'A' maps to two leaves"),
    (lambda t: t["root"]["children"][1].pop("icon"), "lacks a 'icon'"),
    (lambda t: t["root"]["children"][1].pop("labels"), "leaf 'feet' has no dataset labels"),
    (lambda t: t["root"]["children"][1].update(name="fe.et"), "must not contain '.'"),
    (lambda t: t["root"]["children"][1]["labels"].append("Skip"), "both ignored and a class"),
])
def test_invalid_taxonomy_names_the_problem(mutate, message):
    raw = copy.deepcopy(small_tree())
    mutate(raw)
    with pytest.raises(TaxonomyError, match=message):
        Taxonomy(raw)


def test_unknown_label_is_an_error():
    with pytest.raises(TaxonomyError, match="unknown dataset label 'Cardigan'"):
        Taxonomy(small_tree()).leaf_for_label("Cardigan")
