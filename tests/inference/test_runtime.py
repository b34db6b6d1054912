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


def test_the_worker_serves_a_quantized_version_on_the_cpu_provider(tmp_path, database_url, monkeypatch):
    """An INT8 version (``wardrobe quantize``) is a version like any other: published, activated,
    followed by the tracker and run; its session is opened without asking for the GPU, where
    ONNX Runtime would not run its int8 convolutions fast."""
    import numpy as np

    import shared.model_contract as contract
    from services.trainer.model.quantize import served_inputs
    from services.trainer.pipelines.quantize import quantize_version
    from shared.model_card import ModelCard
    from shared.taxonomy import load_taxonomy
    from tests.trainer.conftest import class_labels, write_dataset

    source = make_tiny_model(tmp_path / "float", "tiny-f", seed=4)
    data = write_dataset(tmp_path / "data", class_labels(load_taxonomy()), per_label=2, senders=5)
    int8 = quantize_version(source, data, tmp_path / "new", photos=16, check_photos=8, min_top1_agreement=0.0,
                            threads=1).model_dir
    run_migrations(database_url)
    store = LocalModelStore(tmp_path / "store")
    with session_scope(database_url) as session:
        registry.publish(session, store, source, activate_it=True)
        registry.publish(session, store, int8)
    asked: list[bool] = []
    real_open = contract.open_session

    def spy(path, threads=0, prefer_gpu=False, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        asked.append(prefer_gpu)
        return real_open(path, threads, False, *args, **kwargs)

    monkeypatch.setattr(contract, "open_session", spy)
    tracker = ModelTracker(database_url, check_interval_s=0.0, loader=lambda key: load_model(store.fetch(key)))
    x = served_inputs(sorted((data / "images").glob("*.jpg"))[:3], ModelCard.load(source).preprocess)
    float_probs = tracker.current().run(x)
    with session_scope(database_url) as session:
        registry.activate(session, "tiny-f-int8")
    model = tracker.current()
    assert model.version == "tiny-f-int8" and model.card.quantization is not None
    assert asked == [True, False], "the float version may use the GPU, the INT8 one is kept on the CPU"
    probs = model.run(x)
    assert probs.shape == (3, len(model.classes)) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert not np.array_equal(probs, float_probs) and np.abs(probs - float_probs).max() < 0.2
