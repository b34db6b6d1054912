"""Following the registry's active version (the sessions themselves: tests/shared/test_model_contract.py)."""

from __future__ import annotations

from services.inference.runtime import ModelTracker
from shared import registry
from shared.db import run_migrations, session_scope
from shared.model_contract import LoadedModel, load_model
from shared.model_store import LocalModelStore
from tests.factories import make_tiny_model


def test_tracker_switches_to_the_newly_activated_version(tmp_path, database_url, model_dir):
    """Versions are found by key in the model store (published there from anywhere)."""
    run_migrations(database_url)
    second = make_tiny_model(tmp_path / "elsewhere", "tiny-2", seed=2)
    store = LocalModelStore(tmp_path / "store")
    with session_scope(database_url) as session:
        registry.publish(session, store, model_dir / "tiny-1", activate_it=True)
        registry.publish(session, store, second)
    loads: list[str] = []

    def loader(key: str) -> LoadedModel:
        loads.append(key)
        return load_model(store.fetch(key), prefer_gpu=False)

    tracker = ModelTracker(database_url, check_interval_s=0.0, loader=loader)
    assert tracker.current().version == "tiny-1"
    assert tracker.current().version == "tiny-1" and len(loads) == 1  # not reloaded
    with session_scope(database_url) as session:
        registry.activate(session, "tiny-2")
    assert tracker.current().version == "tiny-2" and loads == ["tiny-1", "tiny-2"]


def test_tracker_checks_the_registry_at_most_every_interval(database_url, model_dir):
    run_migrations(database_url)
    with session_scope(database_url) as session:
        registry.register(session, model_dir / "tiny-1", activate_it=True)
    tracker = ModelTracker(database_url, check_interval_s=3600,
                           loader=lambda key: load_model(model_dir / key, prefer_gpu=False))
    first = tracker.current()
    with session_scope(database_url) as session:
        registry.activate(session, "tiny-1")
    assert tracker.current() is first
