"""The learning modes through the real job runner: feedback rows in the database and photos in
the photo store → quick refit / recalibration → publish → gate → promotion (or not)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from services.trainer.jobs import runner as jobs_runner
from services.trainer.config import TrainerSettings
from shared import registry
from shared import training_jobs as tj
from shared.auth import Caller, Role
from shared.bootstrap import prepare_database
from shared.db import session_scope
from shared.feedback import give
from shared.model_card import ModelCard
from shared.storage import PhotoStore
from shared.tables import ClassificationJob, JobStatus
from shared.taxonomy import load_taxonomy
from tests.trainer.conftest import class_labels, make_photo, write_dataset

pytestmark = pytest.mark.slow

TINY = {"input_size": "64", "resize_size": "72", "batch_size": "16", "threads": "1", "epochs": "2"}


@pytest.fixture
def settings(database_url, tmp_path, model_dir):
    taxonomy = load_taxonomy()
    labels = class_labels(taxonomy)
    data = write_dataset(tmp_path / "data", labels, per_label=5, senders=17)
    store = tmp_path / "store"
    prepare_database(database_url, model_dir, model_store=store)
    s = TrainerSettings(database_url=database_url, data_dir=tmp_path / "var", model_dir=model_dir,
                        model_store=str(store), dataset_dir=data, split_file=tmp_path / "split.json",
                        heartbeat_interval_s=0.05, feedback_holdout_share=0.3, gate_min_feedback=3, gate_min_people=2,
                        recalibration_min_photos=5)
    _feedback(s, taxonomy, n=24)
    return s


def _feedback(settings, taxonomy, n: int) -> None:
    """``n`` finished classifications of new photos by 8 people, each corrected to its true leaf."""
    photos = PhotoStore(settings.resolved_photo_dir)
    rng = np.random.default_rng(3)
    with session_scope(settings.resolved_database_url) as session:
        for i in range(n):
            label = i % len(taxonomy.leaves)
            buf = io.BytesIO()
            make_photo(label, rng).save(buf, format="JPEG", quality=90)
            caller = Caller(id=f"person-{i % 8}", role=Role.client)
            job = ClassificationJob(id=uuid.uuid4(), status=JobStatus.done, photo_key=photos.put(buf.getvalue()),
                                    accuracy_target=0.9, model_version="tiny-1", owner_id=caller.id,
                                    result={"answer": {"node": {"name": "body"}}})
            session.add(job)
            session.flush()
            give(session, str(job.id), caller, taxonomy, node=taxonomy.leaves[label])


def _run(settings, mode: str, **options):
    with session_scope(settings.resolved_database_url) as session:
        job_id = str(tj.create(session, mode, options, "trainer-1").id)
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "done"
    with session_scope(settings.resolved_database_url) as session:
        row = tj.get(session, job_id)
        active = registry.active_version(session).version
        return row, active


def test_a_quick_job_learns_from_feedback_and_the_gate_decides(settings):
    row, active = _run(settings, "quick", version="quick-1", recipe=TINY)
    m, gate = row.metrics, row.gate
    assert row.candidate_version == "quick-1"
    assert m["feedback_photos_learned"] + m["feedback_photos_held_back"] == 24
    assert m["feedback_photos_held_back"] > 0 and m["features_computed"] > 0
    test_ids = json.loads(settings.split_file.read_text())["test"]
    assert gate["active_version"] == "tiny-1" and gate["candidate"]["eval"]["n"] == len(test_ids)
    assert gate["candidate"]["feedback"]["n"] == m["feedback_photos_held_back"]
    assert active == ("quick-1" if gate["promote"] else "tiny-1")
    stored = ModelCard.load(Path(settings.model_store) / "quick-1")
    assert stored.data["feedback_photos"] == m["feedback_photos_learned"] and stored.data["mode"] == "quick"


def test_a_recalibration_job_makes_a_version_sharing_the_model(settings):
    row, active = _run(settings, "recalibrate", version="tiny-1-recal", promote="always")
    assert row.candidate_version == "tiny-1-recal" and active == "tiny-1-recal"
    assert row.metrics["recalibrated_from"] == "tiny-1" and row.metrics["crc_unit"] == "photo"
    gate = row.gate
    assert gate["candidate"]["eval"]["top1"] == gate["active"]["eval"]["top1"], "same ONNX file, same top-1"
    new, old = ModelCard.load(Path(settings.model_store) / "tiny-1-recal"), ModelCard.load(Path(settings.model_store) / "tiny-1")
    assert new.hashes == old.hashes and new.calibration != old.calibration
    assert new.data["recalibrated_from"] == "tiny-1"


def test_a_recalibration_without_enough_feedback_fails_saying_so(settings):
    settings = settings.model_copy(update={"recalibration_min_photos": 500})
    with session_scope(settings.resolved_database_url) as session:
        job_id = str(tj.create(session, "recalibrate", {}, "trainer-1").id)
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "failed"
    with session_scope(settings.resolved_database_url) as session:
        assert "at least 500" in tj.get(session, job_id).error
