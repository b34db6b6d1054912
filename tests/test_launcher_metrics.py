"""The launcher gives each process of one host its own metrics port (shared/metrics.py: one per process)."""

from __future__ import annotations

from services.launcher import METRICS_PORT_OFFSETS, _with_metrics_port


def test_one_metrics_port_for_the_stack_becomes_one_per_process():
    env = {"METRICS_PORT": "9100", "OTHER": "x"}
    ports = {s: int(_with_metrics_port(s, env, None)["METRICS_PORT"]) for s in METRICS_PORT_OFFSETS}
    assert ports == {"gateway": 9100, "inference": 9101, "hedger": 9102, "sweeper": 9103, "trainer": 9104}
    assert env == {"METRICS_PORT": "9100", "OTHER": "x"}  # the caller's environment is left alone


def test_explicit_ports_win_and_unset_stays_off():
    assert _with_metrics_port("hedger", {"METRICS_PORT": "9100"}, {"hedger": 4242})["METRICS_PORT"] == "4242"
    assert "METRICS_PORT" not in _with_metrics_port("hedger", {}, None)
    assert _with_metrics_port("hedger", {"METRICS_PORT": "0"}, None) == {"METRICS_PORT": "0"}
