"""Migrations on a real database: one head, and model paths become store keys."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from shared.db import MIGRATIONS_DIR, get_engine


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def test_there_is_exactly_one_head():
    assert len(ScriptDirectory.from_config(_config("sqlite://")).get_heads()) == 1


def test_absolute_model_paths_become_keys_relative_to_the_store(database_url):
    cfg = _config(database_url)
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO model_versions (version, path, card, active, created_at) VALUES "
                          "('v1', '/app/models/v1', '{}', true, CURRENT_TIMESTAMP)"))
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        assert conn.execute(text("SELECT version, key FROM model_versions")).all() == [("v1", "v1")]
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
        assert conn.execute(text("SELECT path FROM model_versions")).scalar() == "v1"
