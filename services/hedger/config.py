"""Settings of the hedger worker."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from shared.config import CommonSettings
from shared.hedging.calibration import Method


class HedgerSettings(CommonSettings):
    redis_url: str = Field(description="Broker and result backend (required).")
    taxonomy_path: Path | None = Field(None, description="Taxonomy YAML; the bundled one if unset.")
    hedge_method: Method | None = Field(
        None, description="'crc' or 'darts' (the hedging library's methods); the model card's default if unset."
    )
    top_k: int = Field(5, ge=1, description="Leaf predictions listed in a result.")
    concurrency: int = Field(1, ge=1, description="Hedging is cheap: one solo worker process keeps latency low.")


@lru_cache
def get_settings() -> HedgerSettings:
    return HedgerSettings()
