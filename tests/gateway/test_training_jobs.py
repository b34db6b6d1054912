"""Route logic of /v1/training-jobs: strict options, enqueueing, reading, cancelling."""

from __future__ import annotations

import uuid

import pytest

from shared import training_jobs as tj
from shared.db import session_scope



@pytest.fixture
def client(anonymous, keys):  # noqa: ANN001 - these routes need the trainer role
    anonymous.headers.update(keys.headers("trainer"))
    return anonymous


def test_post_returns_202_with_location_and_enqueues_the_job(client, fake_queue):
    r = client.post("/v1/training-jobs", json={"mode": "quick", "version": "q-1"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["mode"] == "quick" and body["options"] == {"version": "q-1"}
    assert body["progress"] == 0.0 and body["eta_s"] is None and body["requested_by"]
    assert r.headers["location"] == f"/v1/training-jobs/{body['id']}"
    assert fake_queue.training_jobs == [body["id"]]
    assert client.get(f"/v1/training-jobs/{body['id']}").json()["status"] == "queued"
    assert [j["id"] for j in client.get("/v1/training-jobs").json()] == [body["id"]]
    assert client.get("/v1/training-jobs", params={"status": "done"}).json() == []


@pytest.mark.parametrize("body,fragment", [
    ({"mode": "quick", "epochs": 3}, "'epochs'"),
    ({"mode": "quick", "promote": "sometimes"}, "promote"),
    ({"mode": "turbo"}, "mode"),
    ({}, "mode"),
    ({"mode": "full", "recipe": {"epoch": "1"}}, "unknown recipe field 'epoch'"),
    ({"mode": "full", "recipe_preset": "tpu"}, "unknown recipe preset 'tpu'"),
    ({"mode": "quick", "recipe_preset": "gpu"}, "mode 'full' only"),
    ({"mode": "recalibrate", "recipe": {"epochs": "1"}}, "not 'recalibrate'"),
    ({"mode": "quick", "recipe": {"epoch": "1"}}, "unknown recipe field 'epoch'"),
    ({"mode": "quick", "version": "../etc"}, "version"),
    ({"mode": "quick", "tolerance": 2}, "tolerance"),
])
def test_bad_options_are_422_naming_them_and_nothing_is_queued(client, fake_queue, body, fragment):
    r = client.post("/v1/training-jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request" and fragment in r.json()["error"]["message"], r.json()
    assert fake_queue.training_jobs == [] and client.get("/v1/training-jobs").json() == []


def test_a_job_the_queue_cannot_take_is_failed_not_left_queued(client, fake_queue):
    fake_queue.down = True
    r = client.post("/v1/training-jobs", json={"mode": "quick"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable"
    (job,) = client.get("/v1/training-jobs").json()
    assert job["status"] == "failed" and job["error"]["code"] == "queue_unavailable"


def test_unknown_job_is_404(client):
    for job_id in (str(uuid.uuid4()), "nope"):
        r = client.get(f"/v1/training-jobs/{job_id}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "training_job_not_found"
        assert client.post(f"/v1/training-jobs/{job_id}/cancel").status_code == 404


def test_cancel_of_a_queued_job_cancels_it_and_a_second_cancel_is_409(client):
    job_id = client.post("/v1/training-jobs", json={"mode": "quick"}).json()["id"]
    r = client.post(f"/v1/training-jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.post(f"/v1/training-jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "training_job_finished"
    assert "cancelled" in r.json()["error"]["message"]


def test_cancel_of_a_running_job_asks_it_to_stop_and_of_a_done_job_is_409(client, gateway_settings):
    job_id = client.post("/v1/training-jobs", json={"mode": "quick"}).json()["id"]
    with session_scope(gateway_settings.resolved_database_url) as session:
        tj.claim(session, job_id, "w1")
        tj.beat(session, job_id, stage="fit", progress=0.5)
    body = client.post(f"/v1/training-jobs/{job_id}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] and body["eta_s"] is not None
    with session_scope(gateway_settings.resolved_database_url) as session:
        tj.finish(session, job_id, metrics={"top1": 0.8}, candidate_version="v2",
                  gate={"promote": False, "reason": "worse by 3 points"})
    r = client.post(f"/v1/training-jobs/{job_id}/cancel")
    assert r.status_code == 409 and "done" in r.json()["error"]["message"]
    body = client.get(f"/v1/training-jobs/{job_id}").json()
    assert body["gate"]["reason"] == "worse by 3 points" and body["candidate_version"] == "v2"


def test_training_jobs_need_the_trainer_role(anonymous, keys):
    r = anonymous.post("/v1/training-jobs", json={"mode": "quick"}, headers=keys.headers("client"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert anonymous.get("/v1/training-jobs", headers=keys.headers("client")).status_code == 403
