"""Route logic of /v1/classifications: validation, storage, enqueueing, answers."""

from __future__ import annotations

import uuid

import pytest

from shared import jobs
from shared.db import session_scope
from shared.model_card import ModelCard
from shared.storage import PhotoStore
from shared.tables import JobStatus
from tests.factories import bad_uploads, jpeg_bytes, png_bytes


def _jobs(settings) -> dict[str, int]:  # noqa: ANN001
    with session_scope(settings.resolved_database_url) as session:
        return jobs.count_by_status(session)


def test_post_photo_returns_202_with_location_and_enqueues_the_job(client, fake_queue, gateway_settings):
    data = jpeg_bytes()
    r = client.post("/v1/classifications", files={"photo": ("a.jpg", data, "image/jpeg")})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["accuracy_target"] == gateway_settings.default_accuracy
    assert r.headers["location"] == f"/v1/classifications/{body['id']}"
    assert fake_queue.enqueued == [body["id"]]
    store = PhotoStore(gateway_settings.resolved_photo_dir)
    with session_scope(gateway_settings.resolved_database_url) as session:
        job = jobs.get_job(session, body["id"])
        assert store.get(job.photo_key) == data


def test_post_same_photo_twice_stores_it_once(client, gateway_settings):
    data = png_bytes()
    for _ in range(2):
        assert client.post("/v1/classifications", files={"photo": ("a.png", data)}).status_code == 202
    files = [p for p in gateway_settings.resolved_photo_dir.rglob("*") if p.is_file()]
    assert len(files) == 1


@pytest.mark.parametrize("where", ["form", "query"])
def test_post_accepts_accuracy_as_form_or_query(client, where):
    kwargs = {"data": {"accuracy": "0.75"}} if where == "form" else {"params": {"accuracy": 0.75}}
    r = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, **kwargs)
    assert r.status_code == 202 and r.json()["accuracy_target"] == 0.75


BAD_INPUTS = bad_uploads(max_bytes=300_000)


@pytest.mark.parametrize("files,params,status,code,fragment", [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_post_bad_input_is_rejected_without_a_job(client, fake_queue, gateway_settings, files, params, status,
                                                  code, fragment):
    r = client.post("/v1/classifications", files=files or None, params=params,
                    data=None if files else {"note": "no photo"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert fragment in error["message"]
    assert fake_queue.enqueued == []
    assert _jobs(gateway_settings) == {}


def test_post_with_content_length_over_limit_is_refused_before_parsing(client, gateway_settings):
    big = b"\xff\xd8" + b"0" * (gateway_settings.max_photo_bytes + 100_000)
    r = client.post("/v1/classifications", files={"photo": ("a.jpg", big)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "photo_too_large"


def test_chunked_body_over_limit_is_cut_while_streaming(client, gateway_settings):
    """No Content-Length: the body is counted as it arrives and cut at the limit (413), so it is
    never spooled whole; the chunks after the cut are never asked for."""
    chunk, sent = b"0" * 65536, []

    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(2 * gateway_settings.max_photo_bytes // len(chunk)):
            sent.append(len(chunk))
            yield chunk

    r = client.post("/v1/classifications", content=body(),
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "photo_too_large"
    assert "limit" in r.json()["error"]["message"]
    assert _jobs(gateway_settings) == {}


def test_post_when_queue_is_down_answers_503_and_fails_the_job(client, fake_queue, gateway_settings):
    fake_queue.down = True
    r = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())})
    assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable"
    assert _jobs(gateway_settings) == {"failed": 1}


def test_get_unknown_job_is_404(client):
    assert client.get("/v1/classifications/6a0d7a4e-0000-4000-8000-000000000000").status_code == 404
    r = client.get("/v1/classifications/not-a-uuid")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


def test_get_pending_job_with_short_wait_returns_it_pending(client):
    job_id = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}).json()["id"]
    r = client.get(f"/v1/classifications/{job_id}", params={"wait": 0.2})
    assert r.status_code == 200 and r.json()["status"] == "pending"


def _done_job(settings, job_id: str, probs: list[float] | None, version: str = "tiny-1") -> dict:  # noqa: ANN001
    """Make the job look classified: stored probabilities and the answer they got at 0.9."""
    from shared.hedging.hedging import Hedger
    from shared.model_card import ModelCard
    from shared.taxonomy import load_taxonomy

    card = ModelCard.load(settings.model_dir / "tiny-1")
    stored = Hedger(load_taxonomy(), card.calibration, card.classes).classify(
        probs or [1.0 / len(card.classes)] * len(card.classes), 0.9, "darts").model_dump(mode="json")
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get_job(session, job_id)
        job.status, job.leaf_probs, job.model_version, job.result = JobStatus.done, probs, version, stored
    return stored


def test_get_with_accuracy_rehedges_a_done_job_without_storing(client, gateway_settings):
    job_id = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}).json()["id"]
    classes = ModelCard.load(gateway_settings.model_dir / "tiny-1").classes
    probs = [0.0] * len(classes)
    probs[0], probs[1] = 0.55, 0.45  # two leaves: specific at a low target, general at a high one
    stored = _done_job(gateway_settings, job_id, probs)
    low = client.get(f"/v1/classifications/{job_id}", params={"accuracy": 0.5}).json()
    high = client.get(f"/v1/classifications/{job_id}", params={"accuracy": 0.999}).json()
    for body, target in ((low, 0.5), (high, 0.999)):
        assert body["rehedged"] is True and body["accuracy_target"] == target
        assert body["answer"]["accuracy_target"] == pytest.approx(target)
        assert body["answer"]["method"] == "darts"  # the method that answered the job
        assert body["top_predictions"] == stored["top_predictions"]
    assert high["answer"]["node"]["name"].count(".") <= low["answer"]["node"]["name"].count(".")
    again = client.get(f"/v1/classifications/{job_id}").json()
    assert again["accuracy_target"] == gateway_settings.default_accuracy and again["answer"] == stored["answer"]


def test_rehedge_of_a_job_whose_model_version_is_gone_is_a_clear_500(client, gateway_settings):
    job_id = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}).json()["id"]
    classes = ModelCard.load(gateway_settings.model_dir / "tiny-1").classes
    _done_job(gateway_settings, job_id, [1.0 / len(classes)] * len(classes), version="deleted-7")
    r = client.get(f"/v1/classifications/{job_id}", params={"accuracy": 0.95})
    assert r.status_code == 500 and r.json()["error"]["code"] == "rehedge_failed"
    assert "deleted-7" in r.json()["error"]["message"]


def test_get_with_bad_accuracy_is_422(client):
    job_id = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}).json()["id"]
    r = client.get(f"/v1/classifications/{job_id}", params={"accuracy": 0.3})
    assert r.status_code == 422 and "accuracy" in r.json()["error"]["message"]


def test_keep_marks_the_callers_classification_kept_and_retention_spares_it(client, gateway_settings):
    from datetime import timedelta

    from shared.retention import RetentionPolicy, expire
    from shared.tables import ClassificationJob, utcnow

    job_id = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes(seed=41))}).json()["id"]
    r = client.put(f"/v1/classifications/{job_id}/keep", json={"keep": True})
    assert r.status_code == 200 and r.json() == {"id": job_id, "keep": True}
    assert client.put(f"/v1/classifications/{job_id}/keep", json={"keep": "yes please"}).status_code == 422
    url = gateway_settings.resolved_database_url
    with session_scope(url) as session:
        row = session.get(ClassificationJob, uuid.UUID(job_id))
        row.status, key = JobStatus.done, row.photo_key
    store = PhotoStore(gateway_settings.resolved_photo_dir)
    far = utcnow() + timedelta(days=4000)
    expire(url, store, RetentionPolicy(), far)
    assert store.path(key).is_file()
    assert client.put(f"/v1/classifications/{job_id}/keep", json={"keep": False}).json()["keep"] is False
    expire(url, store, RetentionPolicy(), far)  # now the usual clocks apply: photo and row go
    with session_scope(url) as session:
        assert session.get(ClassificationJob, uuid.UUID(job_id)) is None
    assert not store.path(key).is_file()
    assert client.put(f"/v1/classifications/{job_id}/keep", json={"keep": True}).status_code == 404
