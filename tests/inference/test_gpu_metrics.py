"""The GPU memory gauges, read through a stand-in for NVML (the driver is the hardware boundary)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from prometheus_client import CollectorRegistry

from services.inference.gpu_metrics import GpuMemoryCollector, register_gpu_metrics


class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, devices: list[tuple[int, int]], broken: bool = False) -> None:
        self.devices, self.broken = devices, broken

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - NVML's names
        if self.broken:
            raise self.NVMLError("GPU is lost")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetMemoryInfo(self, i: int) -> SimpleNamespace:  # noqa: N802
        used, total = self.devices[i]
        return SimpleNamespace(used=used, total=total, free=total - used)


def samples(collector) -> dict[tuple[str, str], float]:  # noqa: ANN001
    registry = CollectorRegistry()
    registry.register(collector)
    return {(s.name, s.labels.get("gpu")): s.value for m in registry.collect() for s in m.samples}


def test_each_device_reports_used_and_total_bytes():
    got = samples(GpuMemoryCollector(FakeNvml([(3 * 2**30, 80 * 2**30), (0, 80 * 2**30)])))
    assert got == {("wardrobe_gpu_memory_used_bytes", "0"): 3 * 2**30, ("wardrobe_gpu_memory_total_bytes", "0"): 80 * 2**30,
                   ("wardrobe_gpu_memory_used_bytes", "1"): 0, ("wardrobe_gpu_memory_total_bytes", "1"): 80 * 2**30}


def test_a_failing_driver_read_gives_no_series_and_no_error():
    assert samples(GpuMemoryCollector(FakeNvml([(1, 2)], broken=True))) == {}


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")
def test_without_a_driver_nothing_is_registered():
    registry = CollectorRegistry()
    assert register_gpu_metrics(registry) is False
    assert list(registry.collect()) == []
