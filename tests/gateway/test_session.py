"""Browser sessions (services/gateway/sessions.py, /v1/session): the cookie, CSRF, and that a
session is a client key like any other (ownership, revocation, rate limits)."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.sessions import COOKIE, CSRF_HEADER, SessionSigner, load_or_create_secret
from shared import api_keys
from shared.db import session_scope
from shared.tables import ApiKey
from tests.factories import jpeg_bytes

START = {CSRF_HEADER: "new"}


def _browser(app) -> TestClient:  # noqa: ANN001
    """Another TestClient on the started app (``anonymous`` started it; no second lifespan): its
    own cookie jar, as a second browser has."""
    return TestClient(app)


def _start(c: TestClient) -> dict:
    r = c.post("/v1/session", headers=START)
    assert r.status_code == 201, r.text
    return r.json()


# --- the signer ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_verifies_to_its_key_id_until_it_expires():
    clock = Clock()
    signer = SessionSigner(b"s" * 32, max_age_s=3600, clock=clock)
    cookie = signer.issue("abc123")
    assert signer.verify(cookie) == "abc123"
    clock.now += 3599
    assert signer.verify(cookie) == "abc123"
    clock.now += 1
    assert signer.verify(cookie) is None


@pytest.mark.parametrize("tamper", [
    lambda c: c.replace("abc123", "abc124"),  # another key id, same signature
    lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # signature changed
    lambda c: c.rsplit(".", 2)[0] + ".9999999999." + c.rsplit(".", 1)[1],  # expiry pushed out
    lambda c: "v2" + c[2:],
    lambda c: "",
    lambda c: c + ".x",
    lambda c: "v1.ABC.1.x",
])
def test_a_tampered_cookie_verifies_to_nothing(tamper):
    signer = SessionSigner(b"s" * 32, max_age_s=3600)
    assert signer.verify(tamper(signer.issue("abc123"))) is None


def test_a_cookie_signed_with_another_secret_verifies_to_nothing():
    theirs = SessionSigner(b"t" * 32, max_age_s=3600).issue("abc123")
    assert SessionSigner(b"s" * 32, max_age_s=3600).verify(theirs) is None


def test_the_csrf_token_is_per_key_and_per_secret():
    signer = SessionSigner(b"s" * 32, max_age_s=3600)
    token = signer.csrf_token("abc123")
    assert signer.csrf_ok("abc123", token)
    assert not signer.csrf_ok("abc124", token)
    assert not signer.csrf_ok("abc123", None) and not signer.csrf_ok("abc123", "")
    assert not SessionSigner(b"t" * 32, max_age_s=3600).csrf_ok("abc123", token)


def test_the_secret_is_drawn_once_kept_private_and_reused(tmp_path: Path):
    first = load_or_create_secret(None, tmp_path)
    assert len(first) >= 32
    assert (tmp_path / "session_secret").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(None, tmp_path) == first
    assert load_or_create_secret("x" * 40, tmp_path) == b"x" * 40


# --- the routes ----------------------------------------------------------------------------------
def test_starting_a_session_sets_an_http_only_strict_cookie_bound_to_a_new_client_key(anonymous, gateway_settings):
    r = anonymous.post("/v1/session", headers=START)
    assert r.status_code == 201, r.text
    set_cookie = r.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in set_cookie and "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert "path=/" in set_cookie and "max-age=" in set_cookie
    body = r.json()
    assert body["created"] is True and body["csrf_token"]
    with session_scope(gateway_settings.resolved_database_url) as session:
        row = session.get(ApiKey, body["client_id"])
        assert row is not None and row.role.value == "client" and row.revoked_at is None
        # the row records when its cookie expires: retention's wardrobe exemption ends then (shared.wardrobe)
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=timezone.utc)
        assert expires.timestamp() == body["expires_at"]


def test_starting_a_session_needs_the_csrf_header(anonymous):
    r = anonymous.post("/v1/session")
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    assert COOKIE not in anonymous.cookies


def test_a_live_session_is_given_back_not_replaced(anonymous):
    first = _start(anonymous)
    again = anonymous.post("/v1/session", headers=START)
    assert again.status_code == 200 and again.json()["client_id"] == first["client_id"]
    assert again.json()["created"] is False
    assert anonymous.get("/v1/session").json()["csrf_token"] == first["csrf_token"]


def test_without_a_session_get_session_is_401(anonymous):
    r = anonymous.get("/v1/session")
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_ended"


def test_the_cookie_acts_as_its_client_key_on_the_api(anonymous):
    s = _start(anonymous)
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())},
                       headers={CSRF_HEADER: s["csrf_token"]})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert anonymous.get(f"/v1/classifications/{job_id}").status_code == 200  # a read needs no CSRF token
    assert anonymous.get("/v1/taxonomy").status_code == 200


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_a_state_changing_call_with_the_cookie_needs_the_sessions_csrf_token(anonymous, token):
    _start(anonymous)
    headers = {} if token is None else {CSRF_HEADER: token}
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers=headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"


def test_another_sessions_csrf_token_does_not_pass(app, anonymous):
    _start(anonymous)
    theirs = _start(_browser(app))["csrf_token"]
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers={CSRF_HEADER: theirs})
    assert r.status_code == 403


def test_a_bearer_key_needs_no_csrf_token_and_wins_over_a_cookie(anonymous, keys):
    _start(anonymous)
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers=keys.headers("client"))
    assert r.status_code == 202
    # the key's classification, not the session's: the session cannot see it
    assert anonymous.get(f"/v1/classifications/{r.json()['id']}").status_code == 404


def test_one_browser_never_sees_anothers_classifications(app, anonymous):
    s = _start(anonymous)
    job_id = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())},
                            headers={CSRF_HEADER: s["csrf_token"]}).json()["id"]
    other = _browser(app)
    o = _start(other)
    assert o["client_id"] != s["client_id"]
    assert other.get(f"/v1/classifications/{job_id}").status_code == 404
    assert other.get(f"/v1/classifications/{job_id}/thumbnail").status_code == 404
    assert other.delete(f"/v1/classifications/{job_id}", headers={CSRF_HEADER: o["csrf_token"]}).status_code == 404
    assert other.get("/v1/wardrobe").json()["items"] == []
    assert [i["id"] for i in anonymous.get("/v1/wardrobe").json()["items"]] == [job_id]


def test_a_revoked_sessions_key_ends_the_session(anonymous, gateway_settings):
    s = _start(anonymous)
    with session_scope(gateway_settings.resolved_database_url) as session:
        api_keys.revoke(session, s["client_id"])
    anonymous.app.state.keys.cache.pop(f"id:{s['client_id']}")  # as AUTH_CACHE_S passing would
    r = anonymous.get("/v1/wardrobe")
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_ended"
    assert anonymous.post("/v1/session", headers=START).json()["client_id"] != s["client_id"]  # a new one


def test_a_forged_cookie_is_401_not_anyones_session(anonymous, keys):
    anonymous.cookies.set(COOKIE, "v1.deadbeef.9999999999.AAAA")
    r = anonymous.get("/v1/wardrobe")
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_ended"


def test_a_session_is_rate_limited_like_any_client(anonymous, gateway_settings):
    s = _start(anonymous)
    with session_scope(gateway_settings.resolved_database_url) as session:
        session.get(ApiKey, s["client_id"]).rate_limit_per_minute = 2
    anonymous.app.state.keys.cache.pop(f"id:{s['client_id']}")
    # five requests fall in at most two of the limiter's one-minute windows, so one window gets three
    codes = [anonymous.get("/v1/wardrobe").status_code for _ in range(5)]
    assert codes[:2] == [200, 200] and 429 in codes and set(codes) == {200, 429}


def test_new_sessions_per_address_are_rate_limited(app, anonymous, gateway_settings):  # noqa: ARG001 - started
    gateway_settings.session_rate_limit_per_minute = 2
    # five new sessions fall in at most two of the limiter's one-minute windows, so one window gets three
    answers = [_browser(app).post("/v1/session", headers=START) for _ in range(5)]
    codes = [r.status_code for r in answers]
    assert codes[:2] == [201, 201] and 429 in codes and set(codes) == {201, 429}
    refused = answers[codes.index(429)]
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
    assert COOKIE not in refused.cookies


def test_with_web_sessions_off_no_session_starts_and_a_cookie_is_ignored(anonymous, gateway_settings):
    _start(anonymous)
    gateway_settings.web_sessions = False
    r = anonymous.post("/v1/session", headers=START)
    assert r.status_code == 403 and r.json()["error"]["code"] == "sessions_disabled"
    r = anonymous.get("/v1/wardrobe")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
