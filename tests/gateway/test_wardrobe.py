"""/v1/wardrobe, thumbnails and removing a garment (shared/wardrobe.py): what goes, what stays."""

from __future__ import annotations

import io

from PIL import Image

from shared import jobs
from shared.db import session_scope
from shared.schemas import ClassificationResult, HedgedAnswer, ScoredNode
from shared.storage import PhotoStore
from shared.tables import ClassificationJob, Feedback, JobStatus
from tests.factories import jpeg_bytes


def _smooth_jpeg(width: int, height: int) -> bytes:
    """A photo-sized JPEG that stays small (a gradient, unlike the factories' noise)."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def _done(client, settings, answer: str = "body.top", seed: int = 0, photo: bytes | None = None) -> str:  # noqa: ANN001
    photo = photo or jpeg_bytes(seed=seed)
    r = client.post("/v1/classifications", files={"photo": ("a.jpg", photo)})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    node = ScoredNode(name=answer, display="Top or tee", icon="👕", probability=0.9)
    result = ClassificationResult(answer=HedgedAnswer(node=node, path=[], alternatives=[], accuracy_target=0.9,
                                                      method="crc", lam=1.0, info_gain=1.0), top_predictions=[])
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get_job(session, job_id)
        job.status, job.model_version, job.result = JobStatus.done, "tiny-1", result.model_dump(mode="json")
    return job_id


def _photo_key(settings, job_id: str) -> str:  # noqa: ANN001
    with session_scope(settings.resolved_database_url) as session:
        return jobs.get_job(session, job_id).photo_key


def _rows(settings, job_id: str) -> tuple[int, int]:  # noqa: ANN001
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get_job(session, job_id)
        n = session.query(Feedback).filter(Feedback.classification_id == (job.id if job else None)).count() if job else 0
        return (1 if job else 0), n


def test_the_wardrobe_lists_the_callers_garments_with_their_verdicts(client, gateway_settings):
    unjudged = _done(client, gateway_settings, seed=1)
    confirmed = _done(client, gateway_settings, seed=2)
    corrected = _done(client, gateway_settings, seed=3)
    client.post(f"/v1/classifications/{confirmed}/feedback", json={"node": "body.top.polo"})
    client.post(f"/v1/classifications/{corrected}/feedback", json={"node": "feet.shoes"})
    vaguer = _done(client, gateway_settings, seed=4)  # a Yes to the answer re-hedged up to "Clothing"
    client.post(f"/v1/classifications/{vaguer}/feedback", json={"node": "body"})
    r = client.get("/v1/wardrobe")
    assert r.status_code == 200
    items = {i["id"]: i for i in r.json()["items"]}
    assert [i["id"] for i in r.json()["items"]] == [vaguer, corrected, confirmed, unjudged]  # newest first
    assert items[vaguer]["verdict"] == "confirmed" and items[vaguer]["label"]["name"] == "body"
    assert items[unjudged]["verdict"] is None and items[unjudged]["label"]["name"] == "body.top"
    assert items[confirmed]["verdict"] == "confirmed" and items[confirmed]["label"]["display"] == "Polo shirt"
    assert items[corrected]["verdict"] == "corrected" and items[corrected]["label"]["name"] == "feet.shoes"
    assert items[corrected]["label"]["icon"] == "👟"
    assert items[corrected]["thumbnail_url"] == f"/v1/classifications/{corrected}/thumbnail"


def test_the_wardrobe_shows_only_the_callers_own(client, anonymous, keys, gateway_settings):
    _done(client, gateway_settings)
    assert anonymous.get("/v1/wardrobe", headers=keys.headers("client2")).json()["items"] == []
    # an operator sees any classification, but its wardrobe is its own
    assert anonymous.get("/v1/wardrobe", headers=keys.headers("operator")).json()["items"] == []


def test_a_thumbnail_is_a_small_jpeg_of_the_owners_photo(client, anonymous, keys, gateway_settings):
    job_id = _done(client, gateway_settings, photo=_smooth_jpeg(1200, 800))
    r = client.get(f"/v1/classifications/{job_id}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "private" in r.headers["cache-control"]
    assert max(Image.open(io.BytesIO(r.content)).size) == 320
    assert anonymous.get(f"/v1/classifications/{job_id}/thumbnail", headers=keys.headers("client2")).status_code == 404
    assert anonymous.get(f"/v1/classifications/{job_id}/thumbnail", headers={"Authorization": ""}).status_code == 401


def test_removing_a_garment_deletes_its_photo_classification_and_feedback(client, gateway_settings):
    job_id = _done(client, gateway_settings)
    client.post(f"/v1/classifications/{job_id}/feedback", json={"correct": True})
    key = _photo_key(gateway_settings, job_id)
    store = PhotoStore(gateway_settings.resolved_photo_dir)
    assert store.path(key).exists()
    r = client.delete(f"/v1/classifications/{job_id}")
    assert r.status_code == 204
    assert not store.path(key).exists()
    assert _rows(gateway_settings, job_id) == (0, 0)
    assert client.get(f"/v1/classifications/{job_id}").status_code == 404  # not from this gateway's cache either
    assert client.get("/v1/wardrobe").json()["items"] == []
    assert client.delete(f"/v1/classifications/{job_id}").status_code == 404


def test_a_photo_another_classification_holds_stays(client, anonymous, keys, gateway_settings):
    mine = _done(client, gateway_settings, seed=7)
    theirs = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes(seed=7))},
                            headers=keys.headers("client2")).json()["id"]  # the same bytes: one stored file
    key = _photo_key(gateway_settings, mine)
    assert _photo_key(gateway_settings, theirs) == key
    assert client.delete(f"/v1/classifications/{mine}").status_code == 204
    assert PhotoStore(gateway_settings.resolved_photo_dir).path(key).exists()
    assert anonymous.get(f"/v1/classifications/{theirs}/thumbnail", headers=keys.headers("client2")).status_code == 200


def test_kept_for_training_the_photo_and_feedback_stay_but_leave_the_wardrobe(client, gateway_settings):
    job_id = _done(client, gateway_settings)
    client.post(f"/v1/classifications/{job_id}/feedback", json={"node": "body.top.polo"})
    key = _photo_key(gateway_settings, job_id)
    r = client.delete(f"/v1/classifications/{job_id}", params={"keep_for_training": "true"})
    assert r.status_code == 204
    assert PhotoStore(gateway_settings.resolved_photo_dir).path(key).exists()
    assert _rows(gateway_settings, job_id) == (1, 1)
    with session_scope(gateway_settings.resolved_database_url) as session:
        assert session.get(ClassificationJob, jobs.parse_job_id(job_id)).owner_id is None
    assert client.get("/v1/wardrobe").json()["items"] == []
    assert client.get(f"/v1/classifications/{job_id}").status_code == 404


def test_another_clients_garment_cannot_be_removed(client, anonymous, keys, gateway_settings):
    job_id = _done(client, gateway_settings)
    r = anonymous.delete(f"/v1/classifications/{job_id}", headers=keys.headers("client2"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    assert client.get(f"/v1/classifications/{job_id}").status_code == 200
