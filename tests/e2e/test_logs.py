"""One upload's lines across processes: the gateway answers its X-Request-ID, and the gateway's,
the inference worker's and the hedger's JSON log lines for that job carry the same request id and
the job id (LOG_FORMAT=json in the test stack)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.factories import jpeg_bytes

pytestmark = pytest.mark.integration


def json_lines(system, process: str) -> list[dict]:
    out = []
    for line in system.group.get(process).log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def lines_of(system, process: str, rid: str, expected: int = 1) -> list[dict]:
    """The process's lines with request id ``rid``, once there are ``expected`` (a log line is
    written after the answer it describes; bounded re-reading, no assertion on how long)."""
    deadline = time.monotonic() + 20
    while True:
        found = [line for line in json_lines(system, process) if line.get("request_id") == rid]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_request_id_follows_the_job_through_every_process(system):
    rid = f"e2e-{uuid.uuid4().hex[:12]}"
    r = system.http.post("/v1/classifications", params={"wait": 20}, headers={"X-Request-ID": rid},
                         files={"photo": ("p.jpg", jpeg_bytes(seed=9100), "image/jpeg")})
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    assert r.headers["x-request-id"] == rid
    job_id = r.json()["id"]
    for process in ("gateway", "inference", "hedger"):
        found = lines_of(system, process, rid)
        assert found, f"{process}: no line with request_id {rid}\n{system.logs()}"
        assert any(line.get("job_id") == job_id for line in found), (process, found)
        assert all({"ts", "level", "logger", "message"} <= set(line) for line in found)
    worker = lines_of(system, "inference", rid)
    assert any(line.get("task") == "inference.classify" for line in worker), worker


def test_an_unusable_request_id_is_replaced(system):
    r = system.http.get("/v1/taxonomy", headers={"X-Request-ID": "a b {forged}"})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert rid != "a b {forged}" and len(rid) == 32 and rid.isalnum()
