"""Settings of the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from shared.config import CommonSettings
from shared.hedging.calibration import MAX_TARGET, MIN_TARGET
from shared.photos import DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


class GatewaySettings(CommonSettings):
    redis_url: str = Field(description="Broker, result backend and completion events (required).")
    # The range of ?accuracy= is not a setting: it is the range the hedging library's λ tables
    # cover (MIN_TARGET..MAX_TARGET), so the gateway and the hedger cannot disagree on it.
    default_accuracy: float = Field(
        0.9, ge=MIN_TARGET, le=MAX_TARGET, description="Accuracy target when the client names none."
    )
    max_wait_s: float = Field(30.0, gt=0.0, description="Upper bound of ?wait= (seconds).")
    wait_fallback_poll_s: float = Field(
        1.0, gt=0.0, description="While waiting, re-read the job this often even without a completion event."
    )
    max_photo_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1, description="Largest upload (bytes).")
    max_photo_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Largest decoded image (pixels).")
    decode_budget_bytes: int = Field(
        DEFAULT_DECODE_BUDGET_BYTES, ge=1,
        description="Bytes of full-size bitmap this process decodes at once; larger concurrent decodes wait.",
    )
    max_json_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest body of every route but the upload (bytes); over it: 413 before it is read.",
    )
    body_timeout_s: float = Field(
        10.0, gt=0.0, description="A request body that sends no byte for this long is answered 408 and its connection closed.",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=4096, description="Largest request line plus headers (bytes); over it: 431 and the connection closed.",
    )
    max_header_count: int = Field(100, ge=10, description="Most headers in a request; over it: 431.")
    header_timeout_s: float = Field(
        10.0, gt=0.0, description="A request's line and headers must arrive within this many seconds (else 408, closed).",
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per minute per API key unless the key sets its own (0: no limit).",
    )
    auth_cache_s: float = Field(
        5.0, ge=0.0, le=60.0,
        description="Trust a resolved API key this many seconds before asking the database again: a revoked "
        "key is refused within this time (0: ask on every request).",
    )
    job_cache_size: int = Field(
        2_000, ge=0, le=1_000_000,
        description="Finished jobs kept in memory (least recently used out first), so reading or re-hedging "
        "them again needs no database (0: none).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS); empty: none.",
    )
    web_sessions: bool = Field(
        True, description="Let browsers start sessions (POST /v1/session: each a new client key), so anyone who "
        "can reach the gateway can use the web page; false: API keys only.",
    )
    session_secret: str | None = Field(
        None, min_length=32,
        description="Signs browser session cookies (at least 32 characters); unset: drawn once and kept in "
        "DATA_DIR/session_secret. Gateways that share sessions need the same one.",
    )
    session_max_age_s: int = Field(
        180 * 24 * 3600, ge=60, description="Seconds a browser session (its cookie) lasts from when it was issued.",
    )
    session_rate_limit_per_minute: int = Field(
        30, ge=0, description="New browser sessions per minute per client address (0: no limit).",
    )
    migrate_on_startup: bool = Field(True, description="Wait for the DB, migrate, register a model, then serve.")
    taxonomy_path: Path | None = Field(None, description="Taxonomy YAML; the bundled one if unset.")
    ready_stages: list[Literal["inference", "hedger", "sweeper", "trainer"]] = Field(
        default_factory=list,
        description="Stages that need a live worker for /readyz to answer ready (every stage is reported). "
        "Empty: the gateway is ready when it can accept and answer (Redis, database, an active model); stage "
        "liveness goes to metrics and alerts, so a gateway keeps serving results while the workers are down.",
    )
    refuse_without_workers: bool = Field(
        False, description="Answer an upload 503 no_live_worker while the inference or hedger stage has no live "
        "worker; false: accept it, and it waits in the queue for a worker.",
    )

    @field_validator("session_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose passes ${SESSION_SECRET:-} through as ""
