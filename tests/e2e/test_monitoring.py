"""The dashboard and the alerts against the running test stack, with Debian's Prometheus scraping every
process's metrics port (bench/prometheus_scrape.py's checks): the scraped counts add up to the
classifications sent, every panel's and alert signal's PromQL returns data, every rule is healthy."""

from __future__ import annotations

import pytest

from bench.prometheus_scrape import photos_from, prometheus_binaries, run_checks, start_prometheus
from services import launcher
from tests.e2e.conftest import OPERATOR_KEY

pytestmark = pytest.mark.integration


@pytest.mark.skipif(prometheus_binaries() is None,
                    reason="prometheus/promtool not installed (Debian: apt-get install -y prometheus)")
def test_every_panel_and_alert_returns_data_from_a_real_scrape(system, tmp_path):
    group = launcher.ProcessGroup(log_dir=tmp_path / "logs")
    try:
        targets = {name: url.removeprefix("http://") for name, url in system.metrics_urls.items()}
        prom = start_prometheus(group, tmp_path / "prometheus", targets)
        report = run_checks(prom, system.url, OPERATOR_KEY, photos_from(None, 12), 4, tmp_path / "prometheus",
                            png=tmp_path / "panels.png")
    finally:
        group.stop_all()
    assert report["sent"] == {"done": 12, "other": 0, "refused": 2}, report["sent"]
    assert report["scraped"] == {name: 12 for name in report["scraped"]}, report["scraped"]
    no_data = {k: v["expr"] for k, v in report["queries"].items() if v["status"] not in ("ok", "needs_gpu")}
    assert not no_data, no_data
    needs_gpu = {k for k, v in report["queries"].items() if v["status"] == "needs_gpu"}
    assert all("GPU" in k or "gpu" in k.lower() for k in needs_gpu), needs_gpu  # only the GPU series may be missing
    assert set(report["rule_health"].values()) == {"ok"}, report["rule_health"]
    assert report["promtool"] == {"rules": "ok", "config": "ok"}
    assert (tmp_path / "panels.png").stat().st_size > 10_000
    assert report["ok"]
