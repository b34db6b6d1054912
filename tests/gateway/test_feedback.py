"""Route logic of /v1/classifications/{id}/feedback, and concurrent verdicts on PostgreSQL."""

from __future__ import annotations

import threading
import uuid

from shared import feedback, jobs
from shared.db import session_scope
from shared.schemas import ClassificationResult, HedgedAnswer, ScoredNode
from shared.auth import Caller, Role
from shared.tables import Feedback, JobStatus
from shared.taxonomy import load_taxonomy
from tests.factories import jpeg_bytes


def _classification(client, settings, answer: str | None = "body.top", status=JobStatus.done) -> str:  # noqa: ANN001
    job_id = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}).json()["id"]
    if answer is not None:
        node = ScoredNode(name=answer, display="Top", icon="👕", probability=0.9)
        result = ClassificationResult(answer=HedgedAnswer(node=node, path=[], alternatives=[], accuracy_target=0.9,
                                                          method="crc", lam=1.0, info_gain=1.0), top_predictions=[])
        with session_scope(settings.resolved_database_url) as session:
            job = jobs.get_job(session, job_id)
            job.status, job.model_version, job.result = status, "tiny-1", result.model_dump(mode="json")
    return job_id


def test_confirming_an_answer_stores_it_with_photo_model_and_answer(client, gateway_settings):
    job_id = _classification(client, gateway_settings)
    r = client.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["correct"] and body["node"] == "body.top" and body["answer"] == "body.top" and body["current"]
    assert body["model_version"] == "tiny-1" and len(body["photo_key"]) == 64


def test_a_correction_below_the_answer_means_the_answer_was_right(client, gateway_settings):
    job_id = _classification(client, gateway_settings, answer="body.top")
    below = client.post(f"/v1/classifications/{job_id}/feedback", json={"node": "body.top.t-shirt"}).json()
    assert below["correct"] and below["node"] == "body.top.t-shirt"
    elsewhere = client.post(f"/v1/classifications/{job_id}/feedback", json={"node": "feet"}).json()
    assert not elsewhere["correct"] and elsewhere["node"] == "feet"


def test_a_new_verdict_replaces_the_current_one_and_the_history_keeps_both(client, gateway_settings):
    job_id = _classification(client, gateway_settings)
    first = client.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True}).json()
    second = client.post(f"/v1/classifications/{job_id}/feedback", json={"node": "feet.shoes"}).json()
    r = client.get(f"/v1/classifications/{job_id}/feedback")
    assert r.status_code == 200
    body = r.json()
    assert [f["id"] for f in body["current"]] == [second["id"]]
    assert [f["id"] for f in body["history"]] == [first["id"], second["id"]]
    assert [f["current"] for f in body["history"]] == [False, True]


def test_feedback_naming_a_node_not_in_the_taxonomy_is_422_naming_it(client, gateway_settings):
    job_id = _classification(client, gateway_settings)
    r = client.post(f"/v1/classifications/{job_id}/feedback", json={"node": "body.top.toga"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unknown_node" and "'body.top.toga'" in r.json()["error"]["message"]


def test_feedback_on_an_unknown_classification_is_404(client):
    for job_id in (str(uuid.uuid4()), "not-an-id"):
        r = client.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True})
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        assert job_id in r.json()["error"]["message"]
    assert client.get(f"/v1/classifications/{uuid.uuid4()}/feedback").status_code == 404


def test_feedback_on_an_unfinished_classification_is_409(client, gateway_settings):
    job_id = _classification(client, gateway_settings, answer=None)  # still pending
    r = client.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "classification_not_finished" and "pending" in r.json()["error"]["message"]


def test_malformed_feedback_bodies_are_422_naming_the_problem(client, gateway_settings):
    job_id = _classification(client, gateway_settings)
    for body, fragment in [({}, "exactly one"), ({"correct": True, "node": "feet"}, "exactly one"),
                           ({"correct": False}, "correct"), ({"correct": True, "mood": "happy"}, "mood")]:
        r = client.post(f"/v1/classifications/{job_id}/feedback", json=body)
        assert r.status_code == 422, (body, r.text)
        assert fragment in r.json()["error"]["message"], (body, r.json())
    assert client.get(f"/v1/classifications/{job_id}/feedback").json()["history"] == []


def test_concurrent_verdicts_leave_one_current_and_a_complete_history(client, gateway_settings):
    """Many threads, each its own session and connection, give feedback at the same instant."""
    job_id = _classification(client, gateway_settings)
    taxonomy, url = load_taxonomy(), gateway_settings.resolved_database_url
    alice = Caller("alice", Role.operator)
    nodes = ["feet.shoes", "body.top.t-shirt", "body.top", "accessory.hat"] * 3
    barrier, errors = threading.Barrier(len(nodes)), []

    def give(node: str) -> None:
        try:
            barrier.wait()
            with session_scope(url) as session:
                feedback.give(session, job_id, alice, taxonomy, node=node)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=give, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(url) as session:
        rows = feedback.history(session, job_id, alice)
    assert len(rows) == len(nodes)
    current = [r for r in rows if r.is_current]
    assert len(current) == 1 and current[0].id == rows[-1].id  # the last one given is the current one
    body = client.get(f"/v1/classifications/{job_id}/feedback").json()  # the owner sees everyone's
    assert len(body["current"]) == 1 and len(body["history"]) == len(nodes)
    assert sorted(f["node"] for f in body["history"]) == sorted(nodes)


def test_each_caller_has_its_own_current_verdict(client, gateway_settings):
    job_id = _classification(client, gateway_settings)
    taxonomy, url = load_taxonomy(), gateway_settings.resolved_database_url
    with session_scope(url) as session:
        feedback.give(session, job_id, Caller("alice", Role.operator), taxonomy, node="feet")
        feedback.give(session, job_id, Caller("bob", Role.operator), taxonomy, correct=True)
    with session_scope(url) as session:
        assert sorted(r.caller_id for r in feedback.current_feedback(session)) == ["alice", "bob"]
        assert session.query(Feedback).count() == 2


def test_another_clients_classification_is_as_unknown_as_none(client, anonymous, keys, gateway_settings):
    job_id = _classification(client, gateway_settings)
    other = keys.headers("client2")
    r = anonymous.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True}, headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    assert anonymous.get(f"/v1/classifications/{job_id}/feedback", headers=other).status_code == 404
    ok = anonymous.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True},
                        headers=keys.headers("operator"))
    assert ok.status_code == 201  # an operator may judge any classification


def test_feedback_needs_a_key(anonymous, client, gateway_settings):
    job_id = _classification(client, gateway_settings)
    r = anonymous.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True},
                       headers={"Authorization": ""})
    assert r.status_code == 401
