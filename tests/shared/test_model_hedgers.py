"""Each model version's Hedger, built once from its registry card."""

from __future__ import annotations

import pytest

from shared import registry
from shared.db import run_migrations, session_scope
from shared.hedging.errors import CalibrationError
from shared.model_card import ModelCard
from shared.model_hedgers import ModelHedgers
from shared.model_store import LocalModelStore
from shared.taxonomy import load_taxonomy
from tests.factories import make_tiny_model


@pytest.fixture
def registered(database_url, tmp_path):  # noqa: ANN001
    run_migrations(database_url)
    store = LocalModelStore(tmp_path / "store")
    with session_scope(database_url) as session:
        registry.publish(session, store, make_tiny_model(tmp_path / "src", "cal-1", seed=2), activate_it=True)
        registry.publish(session, store, make_tiny_model(tmp_path / "src", "uncal-1", calibration={}))
    return database_url, tmp_path / "src"


def test_a_versions_hedger_is_built_once_with_its_cards_classes(registered):
    url, src = registered
    hedgers = ModelHedgers(load_taxonomy())
    assert hedgers.cached("cal-1") is None
    with session_scope(url) as session:
        hedger = hedgers.load(session, "cal-1")
    assert hedgers.cached("cal-1") is hedger
    card = ModelCard.load(src / "cal-1")
    assert hedger.classes == card.classes and hedger.calibration == card.calibration


@pytest.mark.parametrize("version, fragment", [("uncal-1", "no hedger calibration"), ("nope", "not in the registry")])
def test_versions_that_cannot_hedge_are_refused_by_name(registered, version, fragment):
    url, _ = registered
    with session_scope(url) as session, pytest.raises(CalibrationError, match=fragment):
        ModelHedgers(load_taxonomy()).load(session, version)


def test_a_version_hedges_on_the_taxonomy_its_card_carries(database_url, tmp_path):
    """After a leaf is added to the served taxonomy, a version trained before (or after) keeps its
    own tree; a card without its tree and another digest is refused naming both."""
    from tests.trainer.pipelines.test_new_class import OLD
    from shared.taxonomy import Taxonomy

    tiny = Taxonomy(OLD)
    run_migrations(database_url)
    store = LocalModelStore(tmp_path / "store")
    own = make_tiny_model(tmp_path / "src", "own-tree", taxonomy=tiny)
    card = ModelCard.load(own)
    card.taxonomy = tiny.raw
    card.save(own)
    bare = make_tiny_model(tmp_path / "src", "bare-tree", taxonomy=tiny)
    with session_scope(database_url) as session:
        registry.publish(session, store, own, activate_it=True)
        registry.publish(session, store, bare)
        hedgers = ModelHedgers(load_taxonomy())  # the served file: the 17-leaf tree
        hedger = hedgers.load(session, "own-tree")
        assert hedger.taxonomy.digest == tiny.digest and hedger.classes == tiny.leaves
        assert hedger.classify([0.7, 0.1, 0.1, 0.1], 0.5).top_predictions[0].name == "top.tee"
        with pytest.raises(CalibrationError, match="does not carry it"):
            hedgers.load(session, "bare-tree")
