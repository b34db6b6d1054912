"""One upload is one trace: the gateway's request span, the inference task's span under it, the
hedger's under that (TRACING_ENDPOINT points the test stack at a stand-in collector)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.factories import jpeg_bytes

pytestmark = pytest.mark.integration


def spans_of_trace(system, rid: str, services: int = 3) -> list[dict]:
    """The spans of the trace whose gateway span has request id ``rid``, once ``services`` processes
    sent theirs (spans go out in batches: bounded re-reading, no assertion on how long)."""
    deadline = time.monotonic() + 30
    while True:
        roots = [s for s in system.traces.spans if s["attributes"].get("wardrobe.request_id") == rid]
        found = [s for s in system.traces.spans if roots and s["trace_id"] == roots[0]["trace_id"]]
        if len({s["service"] for s in found}) >= services or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_an_upload_is_one_trace_through_gateway_inference_and_hedger(system):
    rid = f"trace-{uuid.uuid4().hex[:12]}"
    r = system.http.post("/v1/classifications", params={"wait": 20}, headers={"X-Request-ID": rid},
                         files={"photo": ("p.jpg", jpeg_bytes(seed=9300), "image/jpeg")})
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    job_id = r.json()["id"]
    trace = spans_of_trace(system, rid)
    by_id = {s["span_id"]: s for s in trace}
    (root,) = [s for s in trace if not s["parent_id"]]
    assert root["service"] == "wardrobe-gateway" and root["name"] == "POST /v1/classifications"
    assert root["attributes"]["http.response.status_code"] == 200 and root["attributes"]["wardrobe.request_id"] == rid
    (inference,) = [s for s in trace if s["service"] == "wardrobe-inference"]
    (hedger,) = [s for s in trace if s["service"] == "wardrobe-hedger"]
    assert inference["name"] == "inference.classify" and hedger["name"] == "hedger.hedge"
    assert hedger["parent_id"] == inference["span_id"]  # sent by the inference task, as the chain's next hop
    assert by_id[inference["parent_id"]]["service"] == "wardrobe-gateway"  # sent while answering the request

    def ancestors(span: dict) -> list[str]:
        out = []
        while span["parent_id"]:
            span = by_id[span["parent_id"]]
            out.append(span["span_id"])
        return out

    assert ancestors(hedger)[-1] == root["span_id"]  # one tree, rooted at the request
    assert inference["attributes"]["wardrobe.job_id"] == job_id == hedger["attributes"]["wardrobe.job_id"]
