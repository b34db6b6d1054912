"""The trainer's task runs only training jobs an authorised request created (a real worker, a real broker)."""

from __future__ import annotations

import time
import uuid

import pytest

from services import launcher
from services.trainer.tasks import refusal
from shared import api_keys, registry, training_jobs
from shared.auth import Role
from shared.bootstrap import prepare_database
from shared.celery_app import RUN_JOB, create_celery_app
from shared.db import session_scope

pytestmark = pytest.mark.slow


@pytest.fixture
def migrated(database_url, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    prepare_database(database_url, models)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MODEL_DIR", str(models))
    return database_url, models


def _job(url: str, requested_by: str | None, options: dict | None = None) -> str:
    with session_scope(url) as session:
        return str(training_jobs.create(session, "quick", options or {}, requested_by).id)


def _status(url: str, job_id: str) -> tuple[str, str | None]:
    with session_scope(url) as session:
        job = training_jobs.get(session, job_id)
        return job.status.value, job.error_code


def test_a_training_job_runs_only_with_a_row_naming_a_valid_requester(migrated):
    url, _ = migrated
    with session_scope(url) as session:
        trainer = api_keys.create_key(session, "ci", Role.trainer).row.id
        client = api_keys.create_key(session, "app", Role.client).row.id
        revoked = api_keys.create_key(session, "old", Role.operator).row.id
        api_keys.revoke(session, revoked)
    assert "no training job" in refusal(str(uuid.uuid4()))
    assert "names no requester" in refusal(_job(url, None))
    assert "revoked or may not retrain" in refusal(_job(url, client))
    assert "revoked or may not retrain" in refusal(_job(url, revoked))
    assert refusal(_job(url, trainer)) is None
    assert refusal(_job(url, "cli:root")) is None  # written by someone holding the database credentials


def test_a_trainers_job_row_that_decides_promotion_is_refused(migrated):
    """The gateway answers 403 to these options from a trainer; a row written around it is refused
    here too, so no trainer-requested job bypasses or loosens the gate."""
    url, _ = migrated
    with session_scope(url) as session:
        trainer = api_keys.create_key(session, "ci", Role.trainer).row.id
        operator = api_keys.create_key(session, "ops", Role.operator).row.id
    assert "only an operator" in refusal(_job(url, trainer, {"promote": "always"}))
    assert "only an operator" in refusal(_job(url, trainer, {"tolerance": 0.5}))
    assert refusal(_job(url, trainer, {"promote": "gate"})) is None
    assert refusal(_job(url, operator, {"promote": "always", "tolerance": 0.5})) is None


@pytest.mark.integration
def test_the_trainer_worker_refuses_what_no_authorised_request_created(migrated, redis_url, redis_namespace):
    """Someone who can write to Redis but not to the database: a forged ``trainer.train`` with
    ``activate``, a ``run_job`` for a made-up id or for a row without a requester: none runs."""
    url, models = migrated
    env = launcher.child_env({"REDIS_URL": redis_url, "DATABASE_URL": url, "MODEL_DIR": models,
                              "REDIS_NAMESPACE": redis_namespace})
    orphan, allowed = _job(url, None), _job(url, "cli:root")
    with launcher.ProcessGroup() as group:
        node = launcher.start_worker(group, "trainer", env)
        launcher.wait_for_workers(redis_url, redis_namespace, [node], group=group)
        app = create_celery_app(redis_url, redis_namespace)
        app.send_task("trainer.train", args=[{"dataset_dir": "/tmp", "version": "forged", "activate": True}],
                      queue="trainer")
        app.send_task(RUN_JOB, args=[{"job_id": str(uuid.uuid4())}])
        app.send_task(RUN_JOB, args=[{"job_id": orphan}])
        app.send_task(RUN_JOB, args=[{"job_id": allowed}])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _status(url, orphan)[0] != "queued" and _status(url, allowed)[0] != "queued":
                break
            assert group.get("trainer").alive(), group.get("trainer").tail(60)
            time.sleep(0.5)
        else:
            pytest.fail("the trainer worker did not take the jobs:\n" + group.get("trainer").tail(60))
    assert _status(url, orphan) == ("failed", "unauthorised")
    assert _status(url, allowed)[1] != "unauthorised"  # it ran (whatever the mode made of it)
    with session_scope(url) as session:
        assert registry.get_version(session, "forged") is None
