"""Settings of the inference worker."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.config import CommonSettings
from shared.photos import DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


class InferenceSettings(CommonSettings):
    redis_url: str = Field(description="Broker (required).")
    batch_max_size: int = Field(16, ge=1, description="Most photos in one ONNX Runtime run.")
    batch_max_delay_ms: float = Field(
        10.0, ge=0.0, description="Longest a photo waits for others to join its batch (while more are coming)."
    )
    concurrency: int = Field(0, ge=0, description="Task threads; 0 means batch_max_size.")
    prefetch_multiplier: int = Field(2, ge=1, description="Messages reserved per thread (2: the next batch is ready).")
    model_check_interval_s: float = Field(2.0, gt=0.0, description="How often the active model version is re-read.")
    ort_intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0: its default).")
    ort_allow_spinning: bool = Field(
        False, description="Let ONNX Runtime's intra-op threads busy-wait between runs (its default) instead of "
        "sleeping: slightly quicker back-to-back runs, but on a host with few cores they take CPU from the gateway, "
        "decoding and the other workers.",
    )
    ort_cpu_mem_arena: bool = Field(
        False, description="Keep activations in ONNX Runtime's CPU arena between runs (its default). Off: each run "
        "allocates and frees its own; the arena grew to about 1 GB with the served pair under batches of mixed "
        "sizes and never shrank (bench/hostile_memory.py).",
    )
    prefer_gpu: bool = Field(True, description="Use CUDAExecutionProvider when ONNX Runtime offers it.")
    batch_timeout_s: float = Field(120.0, gt=0.0, description="Longest a task waits for its batch's result.")
    max_photo_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1, description="Largest photo decoded (bytes); as the gateway.")
    max_photo_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Largest decoded image (pixels); as the gateway.")
    decode_budget_bytes: int = Field(
        DEFAULT_DECODE_BUDGET_BYTES, ge=1,
        description="Bytes of full-size bitmap this process decodes at once; larger concurrent decodes wait.",
    )

    @property
    def threads(self) -> int:
        return self.concurrency or self.batch_max_size


@lru_cache
def get_settings() -> InferenceSettings:
    return InferenceSettings()
