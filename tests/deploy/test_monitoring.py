"""deploy/monitoring/: the alert rules pass promtool, the scrape configuration and the dashboard say
what the code exports (every metric a query names is one some process defines)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from bench.prometheus_scrape import DASHBOARD, RULES, alert_signals, dashboard_queries
from shared.config import REPO_ROOT

MONITORING = REPO_ROOT / "deploy" / "monitoring"
ALERTS_NEEDED = {"queue age": "WardrobeQueueAgeHigh", "stuck jobs": "WardrobeOldestJobStuck",
                 "stuck training": "WardrobeTrainingJobStuck", "error rate": "WardrobeErrorRateHigh",
                 "no active model": "WardrobeNoActiveModel", "GPU memory": "WardrobeGpuMemoryHigh"}


def exported_families() -> set[str]:
    """Every metric family the code defines (the first argument of Counter/Gauge/Histogram/...Family)."""
    names = set()
    for path in [*(REPO_ROOT / "services").rglob("*.py"), *(REPO_ROOT / "shared").rglob("*.py")]:
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*"(wardrobe_\w+)"', path.read_text()))
    return names


@pytest.mark.integration
def test_the_rules_pass_promtool():
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian: apt-get install -y prometheus)")
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_every_alert_fires_on_the_data_it_is_for():
    """deploy/monitoring/rules_test.yml: synthetic series in, the expected alerts out (the GPU one too)."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian: apt-get install -y prometheus)")
    done = subprocess.run(["promtool", "test", "rules", str(MONITORING / "rules_test.yml")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_the_issue_asks_for_is_there():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert set(ALERTS_NEEDED.values()) <= alerts, alerts


def test_every_metric_a_query_names_is_exported_by_some_process():
    families = exported_families()
    records = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    rules_exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for expr in [*dashboard_queries().values(), *alert_signals().values(), *rules_exprs]:
        for name in re.findall(r"\bwardrobe[\w:]*", expr):
            series_of = {name, *(name.removesuffix(s) for s in ("_bucket", "_sum", "_count"))}
            assert series_of & (families | records), f"{expr}: {name} is neither exported nor recorded"


def test_the_dashboard_is_grafana_json_with_a_query_per_panel():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["panels"]
    for panel in dash["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_the_kubernetes_scrape_config_keeps_annotated_pods_and_labels_the_component():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml"] and (MONITORING / "rules.yml").is_file()
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "wardrobe" and job["kubernetes_sd_configs"][0]["role"] == "pod"
    relabels = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabels[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["action"] == "keep"
    assert relabels[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]["target_label"] == "component"
    port = relabels[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    assert re.sub(port["regex"], port["replacement"].replace("$", "\\"), "10.0.0.7:8000;9100") == "10.0.0.7:9100"
    for rule in job["relabel_configs"]:
        re.compile(rule.get("regex", ".*"))
