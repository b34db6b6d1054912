"""Tracing is off unless TRACING_ENDPOINT is set: nothing is set up, nothing is added to messages."""

from __future__ import annotations

import pytest

from shared import tracing
from shared.config import CommonSettings, SettingsError


def test_off_by_default():
    settings = CommonSettings()
    assert settings.tracing_endpoint is None
    assert tracing.configure_tracing("test", settings.tracing_endpoint) is False
    assert not tracing.enabled()
    tracing.install_task_tracing("test", None)  # a no-op: connects nothing


def test_the_endpoint_must_be_an_http_url():
    with pytest.raises(SettingsError, match="TRACING_ENDPOINT"):
        CommonSettings(tracing_endpoint="otel-collector:4318")
    with pytest.raises(SettingsError, match="TRACING_SAMPLE_RATIO"):
        CommonSettings(tracing_sample_ratio=1.5)
