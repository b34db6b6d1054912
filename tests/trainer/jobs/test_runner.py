"""The training-job runner, called directly (the Celery wiring is tested with real workers in
tests/e2e): claim → mode function → publish → gate → promotion, cancel, failure, one at a time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.trainer.jobs import runner as jobs_runner
from services.trainer.config import TrainerSettings
from services.trainer.jobs.context import JobContext, JobOutcome
from shared import registry
from shared import training_jobs as tj
from shared.bootstrap import prepare_database
from shared.db import session_scope
from shared.schemas import GateDecision
from tests.factories import make_tiny_model


def tiny_mode(ctx: JobContext) -> JobOutcome:
    """A stand-in mode: reports progress, checks for a cancel, writes a tiny candidate."""
    ctx.progress("fit", 0.5, "fitting")
    ctx.check_cancelled()
    candidate = make_tiny_model(ctx.work_dir, ctx.version, seed=5)
    return JobOutcome(candidate, {"top1": 0.5})


def cancelling_mode(ctx: JobContext) -> JobOutcome:
    with session_scope(ctx.database_url) as session:
        tj.request_cancel(session, ctx.job_id)
    ctx.progress("fit", 0.6, "still fitting")  # a stage change: the reporter beats at once
    deadline = time.monotonic() + 120  # a bound on a hung runner, not on the machine's speed
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    raise AssertionError("the cancel never arrived")


def broken_mode(ctx: JobContext) -> JobOutcome:
    raise ValueError("no photos with feedback yet")


def passing_gate(ctx: JobContext, candidate_dir) -> GateDecision:  # noqa: ANN001
    return GateDecision(promote=True, reason="not worse", candidate={"top1": 0.5}, active={"top1": 0.5})


@pytest.fixture
def settings(database_url, tmp_path, model_dir, monkeypatch):
    store = tmp_path / "store"
    prepare_database(database_url, model_dir, model_store=store)
    monkeypatch.setitem(jobs_runner.MODES, "quick", tiny_mode)
    monkeypatch.setattr(jobs_runner, "GATE", passing_gate)
    return TrainerSettings(database_url=database_url, data_dir=tmp_path / "data", model_dir=model_dir,
                           model_store=str(store), heartbeat_interval_s=0.05)


def _job(settings, **options):
    with session_scope(settings.resolved_database_url) as session:
        return str(tj.create(session, "quick", options, "alice").id)


def _row(settings, job_id):
    with session_scope(settings.resolved_database_url) as session:
        return tj.get(session, job_id)


def test_a_job_publishes_its_candidate_and_the_gate_promotes_it(settings):
    job_id = _job(settings, version="cand-1")
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "done"
    row = _row(settings, job_id)
    assert row.status.value == "done" and row.candidate_version == "cand-1" and row.progress == 1.0
    assert row.gate["promote"] and row.metrics["promoted"] and row.metrics["top1"] == 0.5
    assert any("fitting" in line for line in row.log_tail)
    assert (settings.data_dir / "trainer" / "jobs" / job_id).exists() is False  # scratch removed
    with session_scope(settings.resolved_database_url) as session:
        active = registry.active_version(session)
        assert active.version == "cand-1" and active.key == "cand-1"
        assert registry.activations(session)[0].kind == "promotion"
    assert (Path(settings.model_store) / "cand-1" / "model.onnx").is_file()


def test_promote_never_keeps_the_candidate_inactive(settings):
    job_id = _job(settings, version="cand-2", promote="never")
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "done"
    row = _row(settings, job_id)
    assert row.candidate_version == "cand-2" and not row.gate["promote"] and "never" in row.gate["reason"]
    with session_scope(settings.resolved_database_url) as session:
        assert registry.active_version(session).version == "tiny-1"


def test_a_cancel_stops_a_running_job(settings, monkeypatch):
    monkeypatch.setitem(jobs_runner.MODES, "quick", cancelling_mode)
    job_id = _job(settings)
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "cancelled"
    assert _row(settings, job_id).status.value == "cancelled"


def test_a_failing_mode_fails_the_job_with_its_reason(settings, monkeypatch):
    monkeypatch.setitem(jobs_runner.MODES, "quick", broken_mode)
    job_id = _job(settings)
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "failed"
    row = _row(settings, job_id)
    assert row.status.value == "failed" and row.error == "ValueError: no photos with feedback yet"
    assert row.running_slot is None


def test_a_mode_this_trainer_does_not_run_fails_the_job_naming_it(settings, monkeypatch):
    monkeypatch.delitem(jobs_runner.MODES, "quick")
    job_id = _job(settings)
    assert jobs_runner.run_training_job(job_id, "w1", settings) == "failed"
    assert _row(settings, job_id).error_code == "mode_unavailable"


def test_a_second_job_waits_while_one_runs(settings):
    first, second = _job(settings), _job(settings)
    with session_scope(settings.resolved_database_url) as session:
        tj.claim(session, first, "w-other")
    with pytest.raises(tj.SlotBusy):
        jobs_runner.run_training_job(second, "w1", settings)
    assert _row(settings, second).status.value == "queued"
