"""Per-key limits: requests per minute (429 + Retry-After, re-hedges counted), the upload cap; CORS."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.gateway.api.deps import get_queue
from services.gateway.main import create_app
from shared import api_keys
from shared.auth import Role
from shared.db import session_scope
from tests.factories import jpeg_bytes


def _key(settings, **kw) -> dict[str, str]:  # noqa: ANN001
    with session_scope(settings.resolved_database_url) as session:
        return {"Authorization": f"Bearer {api_keys.create_key(session, 'k', Role.client, **kw).token}"}


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(anonymous, gateway_settings):
    headers = _key(gateway_settings, rate_limit_per_minute=3)
    job = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers=headers)
    assert job.status_code == 202
    assert anonymous.get(job.headers["location"], headers=headers).status_code == 200
    assert anonymous.get(job.headers["location"], params={"accuracy": 0.99}, headers=headers).status_code == 200
    r = anonymous.get(job.headers["location"], params={"accuracy": 0.95}, headers=headers)  # the 4th request
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    other = _key(gateway_settings, rate_limit_per_minute=3)  # limits are per key
    assert anonymous.get("/v1/taxonomy", headers=other).status_code == 200


def test_a_key_with_rate_limit_zero_is_not_limited(anonymous, gateway_settings):
    headers = _key(gateway_settings, rate_limit_per_minute=0)
    assert all(anonymous.get("/v1/taxonomy", headers=headers).status_code == 200 for _ in range(5))


def test_the_default_rate_limit_comes_from_the_settings(gateway_settings, fake_queue):
    settings = gateway_settings.model_copy(update={"rate_limit_per_minute": 2})
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: fake_queue
    with TestClient(app) as c:
        headers = _key(settings)
        assert [c.get("/v1/taxonomy", headers=headers).status_code for _ in range(3)] == [200, 200, 429]


def test_a_key_with_an_upload_cap_cannot_send_more(anonymous, gateway_settings):
    headers = _key(gateway_settings, max_photo_bytes=2000)
    big = jpeg_bytes((256, 256))
    assert len(big) > 2000
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", big)}, headers=headers)
    assert r.status_code == 413 and "2000" in r.json()["error"]["message"]
    small = jpeg_bytes((16, 16))
    assert anonymous.post("/v1/classifications", files={"photo": ("a.jpg", small)}, headers=headers).status_code == 202


def test_cors_allows_only_configured_origins(gateway_settings, fake_queue):
    settings = gateway_settings.model_copy(update={"cors_origins": ["https://shop.example"]})
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: fake_queue
    with TestClient(app) as c:
        pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        ok = c.options("/v1/classifications", headers={"Origin": "https://shop.example", **pre})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example"
        bad = c.options("/v1/classifications", headers={"Origin": "https://evil.example", **pre})
        assert "access-control-allow-origin" not in bad.headers
    # no origins configured: no CORS headers at all
    plain = TestClient(create_app(gateway_settings)).get("/healthz", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in plain.headers
