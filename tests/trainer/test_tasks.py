"""The trainer's task: trains a tiny model from a dataset directory and registers it (inactive),
called directly and through a real trainer worker on a real broker."""

from __future__ import annotations

import time

import pytest

from services import launcher
from services.trainer.tasks import run_training
from shared import registry
from shared.bootstrap import prepare_database
from shared.celery_app import TRAIN, create_celery_app
from shared.db import session_scope
from shared.schemas import TrainTaskIn

TINY = {"input_size": "64", "resize_size": "72", "views": "1", "epochs": "1", "batch_size": "16", "threads": "1"}

pytestmark = pytest.mark.slow


@pytest.fixture
def migrated(database_url, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    prepare_database(database_url, models)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MODEL_DIR", str(models))
    return database_url, models


def test_run_training_registers_an_inactive_version_and_is_idempotent(migrated, tiny_dataset):
    url, models = migrated
    request = TrainTaskIn(dataset_dir=str(tiny_dataset), version="retrain-1", recipe=TINY)
    out = run_training(request)
    assert out.version == "retrain-1" and not out.activated
    assert (models / "retrain-1" / "model.onnx").is_file()
    with session_scope(url) as session:
        row = registry.get_version(session, "retrain-1")
        assert row is not None and not row.active
    assert run_training(request).seconds == 0.0  # already registered: not trained again


def test_unknown_recipe_field_fails_with_its_name(migrated, tiny_dataset):
    with pytest.raises(ValueError, match="unknown recipe field 'epoch'"):
        run_training(TrainTaskIn(dataset_dir=str(tiny_dataset), recipe={"epoch": "1"}))
    with pytest.raises(ValueError, match="unknown recipe preset 'tpu'"):
        run_training(TrainTaskIn(dataset_dir=str(tiny_dataset), recipe_preset="tpu"))


def test_a_retrain_job_can_ask_for_the_gpu_recipe(migrated, tiny_dataset):
    """The preset travels with the job (here on the CPU: the whole network is fine-tuned)."""
    out = run_training(TrainTaskIn(dataset_dir=str(tiny_dataset), version="full-1", recipe_preset="gpu",
                                   recipe={**TINY, "workers": "0", "device": "cpu"}))
    from shared.model_card import ModelCard

    card = ModelCard.load(out.model_dir)
    assert card.recipe["fine_tune"] == "full" and card.recipe["epochs"] == 1


@pytest.mark.integration
def test_trainer_worker_trains_and_registers_through_the_queue(migrated, tiny_dataset, redis_url, redis_namespace):
    url, models = migrated
    env = launcher.child_env({"REDIS_URL": redis_url, "DATABASE_URL": url, "MODEL_DIR": models,
                              "REDIS_NAMESPACE": redis_namespace})
    with launcher.ProcessGroup() as group:
        node = launcher.start_worker(group, "trainer", env)
        launcher.wait_for_workers(redis_url, redis_namespace, [node], group=group)
        app = create_celery_app(redis_url, redis_namespace)
        app.send_task(TRAIN, args=[TrainTaskIn(dataset_dir=str(tiny_dataset), version="queued-1",
                                               recipe=TINY).model_dump()])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with session_scope(url) as session:
                if registry.get_version(session, "queued-1") is not None:
                    break
            assert group.get("trainer").alive(), group.get("trainer").tail(60)
            time.sleep(0.5)
        else:
            pytest.fail("the trainer worker did not register the version:\n" + group.get("trainer").tail(60))
    assert (models / "queued-1" / "card.json").is_file()
