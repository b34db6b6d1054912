"""GPU memory of the inference worker's node, read through NVML when Prometheus scrapes.

``wardrobe_gpu_memory_used_bytes`` and ``wardrobe_gpu_memory_total_bytes`` per device (label ``gpu``,
the NVML index): what the "GPU memory" alert divides (deploy/monitoring/rules.yml). ONNX Runtime's
CUDA provider grows its arena and never hands memory back, so a version switch that loads a second
session, or a larger batch, shows here before it fails with an out-of-memory error. Without an
NVIDIA driver (the CPU image, a laptop) NVML does not initialise and the collector is not registered:
no series, no error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

__all__ = ["GpuMemoryCollector", "register_gpu_metrics"]

log = logging.getLogger(__name__)


class GpuMemoryCollector(Collector):
    def __init__(self, nvml) -> None:  # noqa: ANN001 - the pynvml module
        self.nvml = nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily("wardrobe_gpu_memory_used_bytes", "GPU memory in use on this node's device.",
                                 labels=["gpu"])
        total = GaugeMetricFamily("wardrobe_gpu_memory_total_bytes", "GPU memory of this node's device.",
                                  labels=["gpu"])
        try:
            for i in range(self.nvml.nvmlDeviceGetCount()):
                info = self.nvml.nvmlDeviceGetMemoryInfo(self.nvml.nvmlDeviceGetHandleByIndex(i))
                used.add_metric([str(i)], float(info.used))
                total.add_metric([str(i)], float(info.total))
        except self.nvml.NVMLError as exc:  # a driver hiccup: this scrape has no GPU series
            log.debug("NVML read failed: %s", exc)
        yield used
        yield total


def register_gpu_metrics(registry=REGISTRY) -> bool:  # noqa: ANN001
    """Register the collector if NVML initialises (an NVIDIA driver is present); returns whether it did."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log.info("no GPU memory metrics: %s", exc)
        return False
    registry.register(GpuMemoryCollector(pynvml))
    return True
