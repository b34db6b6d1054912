"""The admission middleware: the key, its rate limit and the body limits are decided on the
headers, before any body is read (services/gateway/admission.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient

from services.gateway.api.deps import get_queue
from services.gateway.main import create_app
from shared import api_keys
from shared.auth import Role
from shared.db import session_scope


class Body:
    """An ASGI ``receive`` that hands out ``chunks`` and counts what was taken; after them it
    never returns (a client that stopped sending), unless ``complete``."""

    def __init__(self, chunks: list[bytes], complete: bool = True) -> None:
        self.chunks, self.complete, self.taken = list(chunks), complete, 0

    async def __call__(self) -> dict:
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.taken += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or not self.complete}
        if self.complete:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def _call(client: TestClient, method: str, path: str, headers: dict[str, str], body: Body) -> tuple[int, dict, bytes]:
    """Call the app (started by ``client``) at the ASGI level, on the client's event loop."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    client.portal.call(client.app, scope, body, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _token(settings, role: Role = Role.client, **kw) -> str:  # noqa: ANN001
    with session_scope(settings.resolved_database_url) as session:
        return api_keys.create_key(session, "k", role, **kw).token


FEEDBACK = f"/v1/classifications/{uuid.uuid4()}/feedback"
BIG = 15 * 1024 * 1024


def test_a_body_without_a_key_is_refused_before_a_byte_of_it_is_read(anonymous):
    body = Body([b"{" + b" " * 65536] * 240)  # 15 MB of JSON on offer
    status, headers, answer = _call(anonymous, "POST", FEEDBACK,
                                    {"content-type": "application/json", "content-length": str(BIG)}, body)
    assert status == 401 and b"unauthenticated" in answer
    assert body.taken == 0, "the body was read before the key was checked"
    assert headers["connection"] == "close"  # the rest of the body is never read either


def test_a_forged_key_and_a_rate_limited_key_are_refused_before_the_body(anonymous, gateway_settings):
    body = Body([b"x" * 1000])
    status, _, _ = _call(anonymous, "POST", FEEDBACK, {"authorization": "Bearer wdr_forged_0",
                                                       "content-length": "1000"}, body)
    assert status == 401 and body.taken == 0
    token = _token(gateway_settings, rate_limit_per_minute=1)
    assert anonymous.get("/v1/taxonomy", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    status, headers, _ = _call(anonymous, "POST", FEEDBACK, {"authorization": f"Bearer {token}",
                                                             "content-length": "1000"}, body)
    assert status == 429 and int(headers["retry-after"]) >= 1 and body.taken == 0


def test_a_json_body_over_its_limit_is_413_from_its_declared_length(anonymous, gateway_settings):
    token = _token(gateway_settings)
    body = Body([b"{}"])
    status, headers, answer = _call(anonymous, "POST", FEEDBACK, {"authorization": f"Bearer {token}",
                                                                  "content-length": str(BIG)}, body)
    assert status == 413 and b"body_too_large" in answer and body.taken == 0
    assert headers["connection"] == "close"


def test_a_chunked_json_body_is_cut_once_it_passes_its_limit(anonymous, gateway_settings):
    token = _token(gateway_settings)
    body = Body([b" " * 16384] * 100)  # 1.6 MB offered, no Content-Length
    status, _, answer = _call(anonymous, "POST", FEEDBACK, {"authorization": f"Bearer {token}",
                                                            "transfer-encoding": "chunked",
                                                            "content-type": "application/json"}, body)
    assert status == 413 and b"body_too_large" in answer
    assert body.taken <= gateway_settings.max_json_body_bytes + 16384


def test_a_body_that_stops_arriving_is_408_and_closed(gateway_settings, fake_queue):
    settings = gateway_settings.model_copy(update={"body_timeout_s": 0.2})
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: fake_queue
    with TestClient(app) as client:
        token = _token(settings)
        body = Body([b'{"correct": '], complete=False)  # 12 of the 40 bytes it declares
        status, headers, answer = _call(client, "POST", FEEDBACK, {"authorization": f"Bearer {token}",
                                                                   "content-type": "application/json",
                                                                   "content-length": "40"}, body)
    assert status == 408 and b"body_timeout" in answer and headers["connection"] == "close"


def test_health_probes_and_docs_need_no_key(anonymous):
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("path", ["/v1/taxonomy", "/v1/nowhere", "/metrics"])
def test_every_api_path_needs_a_key_even_one_that_does_not_exist(anonymous, path):
    r = anonymous.get(path)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_an_upload_under_the_keys_own_cap_plus_the_form_is_read(anonymous, gateway_settings):
    from tests.factories import jpeg_bytes

    token = _token(gateway_settings)
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())},
                       headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202, r.text
