"""Prometheus metrics of the inference worker (served on METRICS_PORT, ``shared.metrics``).

Per photo: ``wardrobe_inference_photos_total`` and ``wardrobe_inference_seconds`` (decode, preprocess,
waiting for the batch and the run: what the photo costs this stage). Per micro-batch:
``wardrobe_inference_batch_size`` (its sum is the photos run, its count the batches) and
``wardrobe_inference_batch_seconds`` (the ONNX Runtime run alone). Queue age, failures by code and
the served model version are the shared families (``shared.metrics``) with ``stage="inference"``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.metrics import JOB_FAILURES, LATENCY_BUCKETS

__all__ = ["PHOTOS", "PHOTO_SECONDS", "BATCH_SIZE", "BATCH_SECONDS", "observe_batch"]

PHOTOS = Counter("wardrobe_inference_photos_total", "Photos run through the network, by model version.",
                 ["model_version"])
PHOTO_SECONDS = Histogram("wardrobe_inference_seconds", "Decode + preprocess + batch wait + run, per photo.",
                          ["model_version"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("wardrobe_inference_batch_size", "Photos per ONNX Runtime run (micro-batch).",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_SECONDS = Histogram("wardrobe_inference_batch_seconds", "ONNX Runtime run time of one micro-batch.",
                          ["model_version"], buckets=LATENCY_BUCKETS)


def observe_batch(version: str, size: int, seconds: float) -> None:
    """The micro-batcher's hook, called once per run (services.inference.batching)."""
    BATCH_SIZE.observe(size)
    BATCH_SECONDS.labels(model_version=version).observe(seconds)


# Every failure code this stage can record starts at 0, so a rate over it is 0, not "no data", until
# the first failure (the error-rate panel and alert need the series to exist).
FAILURE_CODES = ("corrupt_image", "not_an_image", "unsupported_image", "empty_photo", "photo_too_large",
                 "decompression_bomb", "invalid_photo", "photo_missing", "no_active_model", "inference_failed")
for _code in FAILURE_CODES:
    JOB_FAILURES.labels(stage="inference", code=_code)
