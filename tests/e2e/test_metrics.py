"""Metrics through the real processes: every process serves its own on METRICS_PORT (no key), the
counts add up to the classifications sent, and that port leads nowhere near the API."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import registry
from shared.db import session_scope
from tests.e2e.conftest import OPERATOR_KEY
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.integration
N = 6


def scrape(system, process: str) -> str:
    r = httpx.get(f"{system.metrics_urls[process]}/metrics", timeout=10)  # no Authorization header at all
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def settle(system, process: str, name: str, expected: float, **labels: str) -> float:
    """The sample once it reaches ``expected``, or whatever it is after 30 s of re-scraping.

    A task's own counters are written after it hands on its result (Celery's task_postrun), so a
    scrape right after the answer may come a moment early; no assertion here depends on how long."""
    deadline = time.monotonic() + 30
    while True:
        got = value(scrape(system, process), name, **labels)
        if got >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_counters_add_up_to_the_classifications_on_every_process(system):
    names = {
        "gateway": [("wardrobe_classifications_total", {"outcome": "accepted"}),
                    ("wardrobe_classification_accept_seconds_count", {}),
                    ("wardrobe_http_requests_total", {"method": "POST", "route": "/v1/classifications",
                                                      "status": "200"}),
                    ("wardrobe_http_request_seconds_count", {"method": "POST", "route": "/v1/classifications"})],
        "inference": [("wardrobe_inference_photos_total", {"model_version": "tiny-1"}),
                      ("wardrobe_inference_seconds_count", {"model_version": "tiny-1"}),
                      ("wardrobe_inference_batch_size_sum", {}),  # photos per batch, summed over batches
                      ("wardrobe_queue_age_seconds_count", {"stage": "inference"}),
                      ("wardrobe_tasks_total", {"stage": "inference", "task": "inference.classify",
                                                "state": "success"}),
                      ("wardrobe_task_seconds_count", {"stage": "inference", "task": "inference.classify"})],
        "hedger": [("wardrobe_hedge_results_total", {"model_version": "tiny-1"}),
                   ("wardrobe_hedge_seconds_count", {"model_version": "tiny-1"}),
                   ("wardrobe_tasks_total", {"stage": "hedger", "task": "hedger.hedge", "state": "success"})],
    }
    before = {p: scrape(system, p) for p in names}
    for i in range(N):
        r = system.http.post("/v1/classifications", params={"wait": 20},
                             files={"photo": ("p.jpg", jpeg_bytes(seed=7000 + i), "image/jpeg")})
        assert r.status_code == 200 and r.json()["status"] == "done", f"{r.text}\n{system.logs()}"
    for process, samples in names.items():
        for name, labels in samples:
            start = value(before[process], name, **labels)
            got = settle(system, process, name, start + N, **labels)
            assert got - start == N, f"{process} {name}{labels}: {start} -> {got}, expected +{N}"
    inference = scrape(system, "inference")
    assert value(inference, "wardrobe_model_info", stage="inference", version="tiny-1") == 1
    batches = value(inference, "wardrobe_inference_batch_size_count") - value(before["inference"],
                                                                              "wardrobe_inference_batch_size_count")
    assert 1 <= batches <= N


def test_the_sweeper_exports_stage_liveness_and_the_active_model(system):
    # the version active now: other tests on this session's system (model switches, the learning
    # loop's promotions) may have changed it, and the sweeper's gauge follows at its next sweep
    with session_scope(system.database_url) as session:
        active = registry.active_version(session).version
    assert settle(system, "sweeper", "wardrobe_stage_live_workers", 1, stage="inference") >= 1
    assert settle(system, "sweeper", "wardrobe_active_model", 1, version=active) == 1
    text = scrape(system, "sweeper")
    assert value(text, "wardrobe_stage_live_workers", stage="hedger") >= 1
    assert value(text, "wardrobe_active_models") == 1
    assert value(text, "wardrobe_tasks_total", stage="sweeper", task="sweeper.sweep", state="success") >= 1


@pytest.mark.parametrize("process", ["gateway", "inference", "hedger", "sweeper"])
def test_the_metrics_port_serves_metrics_and_nothing_of_the_api(system, process):
    base = system.metrics_urls[process]
    operator = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    assert httpx.get(f"{base}/metrics").status_code == 200
    for method, path in [("GET", "/v1/taxonomy"), ("GET", "/v1/models"), ("POST", "/v1/models/rollback"),
                         ("POST", "/v1/classifications"), ("GET", "/readyz"), ("GET", "/")]:
        r = httpx.request(method, f"{base}{path}", headers=operator)  # even with the operator key
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # the API's own port still answers /v1 and keeps /metrics behind the operator key
    assert system.http.get("/v1/taxonomy").status_code == 200
    assert httpx.get(f"{system.url}/metrics").status_code == 401
