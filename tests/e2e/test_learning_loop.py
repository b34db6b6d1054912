"""The learning loop as real processes: training jobs through the gateway, the trainer queue and a
real trainer worker; the candidate published to the model store, gated, promoted, and served by
the inference workers without a restart; a trainer killed with SIGKILL leaves its job failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services import launcher
from shared.config import REPO_ROOT
from shared.taxonomy import load_taxonomy
from tests.e2e.conftest import OPERATOR_KEY, System
from tests.factories import jpeg_bytes
from tests.trainer.conftest import class_labels, write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A full retrain in seconds: 64 px, one view, one epoch, one thread.
TINY = {"input_size": "64", "resize_size": "72", "views": "1", "epochs": "1", "batch_size": "16", "threads": "1"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    taxonomy = load_taxonomy()
    labels = class_labels(taxonomy)
    return write_dataset(tmp_path_factory.mktemp("retrain-data"), labels, per_label=6, senders=20)


def trainer_env(system: System, dataset: Path, **extra: str) -> dict[str, str]:
    return launcher.child_env({
        "REDIS_URL": system.redis_url, "DATABASE_URL": system.database_url, "REDIS_NAMESPACE": system.namespace,
        "DATA_DIR": system.photo_dir.parent, "MODEL_STORE": system.model_store.root, "DATASET_DIR": dataset,
        "HEARTBEAT_INTERVAL_S": "0.5", "SLOT_RETRY_S": "1", **extra})


def start_trainer(group: launcher.ProcessGroup, system: System, env: dict[str, str], name: str,
                  beat: bool = False) -> str:
    node = launcher.start_worker(group, "trainer", env, node=f"{name}@e2e", beat=beat, name=name)
    launcher.wait_for_workers(system.redis_url, system.namespace, [node], group=group)
    return node


def wardrobe(system: System, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args, "--url", system.url, "--key", OPERATOR_KEY],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def job(system: System, job_id: str) -> dict:
    r = system.http.get(f"/v1/training-jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(system: System, job_id: str, until, timeout: float = 240, group=None) -> tuple[dict, list[dict]]:  # noqa: ANN001
    """Poll the job until ``until(job)``; returns it and every state seen on the way."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(job(system, job_id))
        if until(seen[-1]):
            return seen[-1], seen
        time.sleep(0.2)
    logs = "\n".join(f"--- {c.name}\n{c.tail(60)}" for c in (group.children if group else []))
    pytest.fail(f"job {job_id} never reached the state; last: {seen[-1]}\n{logs}")


def served_by(system: System) -> str:
    r = system.http.post("/v1/classifications", params={"wait": 20},
                         files={"photo": ("p.jpg", jpeg_bytes(seed=int(time.time() * 1000) % 10_000))})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


@pytest.fixture
def trainers(system: System) -> Iterator[launcher.ProcessGroup]:
    with launcher.ProcessGroup(log_dir=system.photo_dir.parent / "logs" / f"trainers-{time.monotonic_ns()}") as group:
        yield group


def test_a_retrain_goes_through_the_queue_to_promotion_and_the_workers_switch(system, dataset, trainers):
    start_trainer(trainers, system, trainer_env(system, dataset), "trainer-a", beat=True)
    assert served_by(system) == "tiny-1"
    inference_pid = system.group.get("inference").popen.pid
    r = system.http.post("/v1/training-jobs", json={"mode": "full", "version": "e2e-full-1", "promote": "always",
                                                    "recipe": TINY})
    assert r.status_code == 202, r.text
    final, seen = wait_for(system, r.json()["id"], lambda j: j["status"] in ("done", "failed", "cancelled"),
                           group=trainers)
    assert final["status"] == "done", final
    statuses = [s["status"] for s in seen]
    assert "running" in statuses and statuses.index("running") < statuses.index("done")
    progress = [s["progress"] for s in seen if s["status"] == "running"]
    assert any(0 < p < 1 for p in progress) and progress == sorted(progress), progress
    assert final["progress"] == 1.0 and final["candidate_version"] == "e2e-full-1" and final["promoted"]
    assert final["gate"]["promote"] and "promote: always" in final["gate"]["reason"]
    assert final["log_tail"] and final["worker"] == "trainer-a@e2e" and final["metrics"]["seconds"] > 0
    assert system.model_store.exists("e2e-full-1")  # published by key into the store the workers read
    try:
        deadline, version = time.monotonic() + 30, None
        while time.monotonic() < deadline and version != "e2e-full-1":
            version = served_by(system)
        assert version == "e2e-full-1"
        assert system.group.get("inference").popen.pid == inference_pid
        listed = wardrobe(system, "models", "list")
        assert listed.returncode == 0 and "* e2e-full-1" in listed.stdout, listed
    finally:
        rolled = wardrobe(system, "models", "rollback")
    assert rolled.returncode == 0 and "active: tiny-1" in rolled.stdout, rolled
    deadline, version = time.monotonic() + 30, None
    while time.monotonic() < deadline and version != "tiny-1":
        version = served_by(system)
    assert version == "tiny-1"


def test_the_cli_retrains_with_a_progress_bar_and_cancels(system, dataset, trainers):
    start_trainer(trainers, system, trainer_env(system, dataset), "trainer-b")
    done = wardrobe(system, "retrain", "--mode", "full", "--version", "e2e-cli-1", "--promote", "never",
                    *[a for kv in TINY.items() for a in ("--set", "=".join(kv))], "--wait", "--poll", "0.3")
    assert done.returncode == 0, done.stderr
    assert "e2e-cli-1" in done.stdout and "never" in done.stdout and "%" in done.stderr  # the tqdm bar
    job_id = done.stdout.split()[0]
    again = wardrobe(system, "jobs", "cancel", job_id)
    assert again.returncode == 1 and "409" in again.stderr and "training_job_finished" in again.stderr
    listing = wardrobe(system, "jobs")
    assert listing.returncode == 0 and job_id in listing.stdout
    bad = wardrobe(system, "retrain", "--mode", "full", "--set", "epoch=1")
    assert bad.returncode == 1 and "unknown recipe field 'epoch'" in bad.stderr


def test_a_killed_trainer_leaves_its_job_failed_and_the_next_job_runs(system, dataset, trainers):
    """SIGKILL to the worker running a job: no code of it runs again. Another trainer's beat sweep
    finds the job's heartbeat stale and fails it with the reason; the queued job then runs."""
    start_trainer(trainers, system, trainer_env(system, dataset), "trainer-doomed")
    slow = {**TINY, "epochs": "200"}
    first = system.http.post("/v1/training-jobs", json={"mode": "full", "recipe": slow, "promote": "never"}).json()
    running, _ = wait_for(system, first["id"], lambda j: j["status"] == "running" and j["stage"] == "training",
                          group=trainers)
    second = system.http.post("/v1/training-jobs", json={"mode": "full", "recipe": TINY, "promote": "never"}).json()
    time.sleep(1.5)
    assert job(system, second["id"])["status"] == "queued"  # one job runs at a time
    doomed = trainers.get("trainer-doomed").popen
    os.killpg(doomed.pid, signal.SIGKILL)  # the worker and anything it forked
    doomed.wait(10)
    trainers.stop("trainer-doomed")  # reaped: the group holds no dead child
    env = trainer_env(system, dataset, TRAINING_HEARTBEAT_TIMEOUT_S="3", SWEEP_INTERVAL_S="1")
    start_trainer(trainers, system, env, "trainer-rescuer", beat=True)
    failed, _ = wait_for(system, first["id"], lambda j: j["status"] != "running", timeout=60, group=trainers)
    assert failed["status"] == "failed" and failed["error"]["code"] == "trainer_died", failed
    assert "trainer-doomed@e2e" in failed["error"]["message"] and "heartbeat" in failed["error"]["message"]
    assert failed["finished_at"] is not None
    nxt, _ = wait_for(system, second["id"], lambda j: j["status"] in ("done", "failed", "cancelled"),
                      group=trainers)
    assert nxt["status"] == "done" and nxt["worker"] == "trainer-rescuer@e2e", nxt


# The quick refit on the quick preset, shrunk to seconds (as tests/trainer/jobs/test_modes.py).
QUICK = {"input_size": "64", "resize_size": "72", "batch_size": "16", "threads": "1", "epochs": "2"}


def test_feedback_through_the_api_then_a_quick_retrain_is_gated_promoted_and_served(system, dataset, trainers,
                                                                                     tmp_path):
    """Four people classify photos and correct the answers through the API; a quick retrain (the
    default: gated) learns from them through the queue; the gate's decision, with both versions'
    scores, is on the job; the promoted candidate serves without a restart.

    Whether a person is held back for the gate hangs on a hash of their key's id, which is drawn
    at random; with four random people a run held back none of them 32 % of the time and three or
    four 5 % (then the candidate learned from one person or none). The people are chosen so that
    one of them is held back (the gate's evidence) and three teach, in every run."""
    import io

    from services.trainer.data.feedback import is_held_back
    from shared import api_keys
    from shared.auth import Role
    from shared.db import session_scope
    from tests.trainer.conftest import make_photo

    taxonomy = load_taxonomy()
    holdout = 0.25
    people, held_back = [], []
    with session_scope(system.database_url) as session:
        while len(people) < 4:
            key = api_keys.create_key(session, f"person-{len(people)}", Role.client)
            back = is_held_back(key.row.id, holdout)
            if (back and not held_back) or (not back and len(people) - len(held_back) < 3):
                people.append(key.token)
                held_back += [key.token] if back else []
    rng = np.random.default_rng(11)
    for i in range(20):
        leaf_index = i % len(taxonomy.leaves)
        buf = io.BytesIO()
        make_photo(leaf_index, rng).save(buf, format="JPEG", quality=90)
        auth = {"Authorization": f"Bearer {people[i % 4]}"}
        r = system.http.post("/v1/classifications", params={"wait": 20}, headers=auth,
                             files={"photo": ("p.jpg", buf.getvalue())})
        assert r.status_code == 200, r.text
        fb = system.http.post(f"/v1/classifications/{r.json()['id']}/feedback", headers=auth,
                              json={"node": taxonomy.leaves[leaf_index]})
        assert fb.status_code == 201, fb.text
    env = trainer_env(system, dataset, SPLIT_FILE=str(tmp_path / "split.json"), GATE_MIN_FEEDBACK="2", GATE_MIN_PEOPLE="1",
                      FEEDBACK_HOLDOUT_SHARE=str(holdout), CACHE_DIR=str(tmp_path / "cache"))
    start_trainer(trainers, system, env, "trainer-q")
    r = system.http.post("/v1/training-jobs", json={"mode": "quick", "version": "e2e-quick-1", "tolerance": 0.5,
                                                    "recipe": QUICK})
    assert r.status_code == 202, r.text
    final, seen = wait_for(system, r.json()["id"], lambda j: j["status"] in ("done", "failed", "cancelled"),
                           group=trainers)
    assert final["status"] == "done", final
    assert any(s["status"] == "running" and 0 < s["progress"] < 1 for s in seen)
    assert final["metrics"]["feedback_photos_learned"] == 15 and final["metrics"]["feedback_photos_held_back"] == 5
    assert final["candidate_version"] == "e2e-quick-1"
    gate = final["gate"]
    assert gate["candidate"] and gate["active"] and gate["active_version"] == "tiny-1" and gate["reason"]
    assert gate["promote"] and final["promoted"], gate  # within a tolerance of 50 points
    try:
        deadline, version = time.monotonic() + 30, None
        while time.monotonic() < deadline and version != "e2e-quick-1":
            version = served_by(system)
        assert version == "e2e-quick-1"
    finally:
        assert system.http.post("/v1/models/rollback").json()["version"] == "tiny-1"
