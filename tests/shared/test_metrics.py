"""The metrics port (shared.metrics): GET /metrics and nothing else, no key; the served model version."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import MODEL_INFO, MetricsServer, set_model_version, start_metrics_server


@pytest.fixture
def server():
    registry = CollectorRegistry()
    Counter("demo_total", "A counter.", registry=registry).inc(3)
    srv = MetricsServer(0, "127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{srv.port}"
    srv.close()


def test_metrics_are_served_without_any_key(server):
    r = httpx.get(f"{server}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {s.name: s.value for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert samples["demo_total"] == 3


@pytest.mark.parametrize("method,path", [("GET", "/"), ("GET", "/v1/taxonomy"), ("POST", "/v1/classifications"),
                                         ("DELETE", "/metrics"), ("GET", "/metrics/../v1/models"),
                                         ("PUT", "/v1/models/x/activate")])
def test_every_other_path_and_method_is_a_404(server, method, path):
    r = httpx.request(method, f"{server}{path}", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 404, (method, path, r.status_code)


def test_port_zero_means_off():
    assert start_metrics_server(0) is None


def test_the_model_info_gauge_names_only_the_version_served_now():
    set_model_version("test-stage", "v1")
    set_model_version("test-stage", "v2")
    set_model_version("other-stage", "v1")
    served = {(s.labels["stage"], s.labels["version"]): s.value for f in MODEL_INFO.collect() for s in f.samples
              if s.labels["stage"] in ("test-stage", "other-stage")}
    assert served == {("test-stage", "v2"): 1.0, ("other-stage", "v1"): 1.0}
