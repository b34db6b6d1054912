"""Settings of the gateway."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.config import CommonSettings
from shared.photos import DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


class GatewaySettings(CommonSettings):
    redis_url: str = Field(description="Broker, result backend and completion events (required).")
    default_accuracy: float = Field(0.9, description="Accuracy target when the client names none.")
    min_accuracy: float = 0.5
    max_accuracy: float = 0.999
    max_wait_s: float = Field(30.0, description="Upper bound of ?wait= (seconds).")
    rehedge_timeout_s: float = Field(10.0, description="How long a re-hedge is awaited before 504.")
    wait_fallback_poll_s: float = Field(
        1.0, description="While waiting, re-read the job this often even without a completion event."
    )
    max_photo_bytes: int = DEFAULT_MAX_BYTES
    max_photo_pixels: int = DEFAULT_MAX_PIXELS
    decode_budget_bytes: int = Field(
        DEFAULT_DECODE_BUDGET_BYTES, ge=1,
        description="Bytes of full-size bitmap this process decodes at once; larger concurrent decodes wait.",
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per minute per API key unless the key sets its own (0: no limit).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS); empty: none.",
    )
    migrate_on_startup: bool = Field(True, description="Wait for the DB, migrate, register a model, then serve.")
    db_wait_attempts: int = 30
    taxonomy_path: Path | None = Field(None, description="Taxonomy YAML; the bundled one if unset.")
