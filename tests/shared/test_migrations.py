"""Migrations on a real database: one head, model paths become store keys, probabilities become lists."""

from __future__ import annotations

import json

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


def test_stored_probabilities_become_a_list_in_the_cards_class_order(database_url):
    """Both spellings of a UUID a row may hold (dashed; 32 hex digits, what SQLAlchemy's Uuid
    stores on SQLite) are converted, on every backend."""
    cfg = _config(database_url)
    card = '{"classes": ["b.x", "a.y", "c.z"]}'
    ids = ("00000000-0000-0000-0000-000000000001", "00000000000000000000000000000002")
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        conn.execute(text("INSERT INTO model_versions (version, key, card, active, created_at) VALUES "
                          f"('v1', 'v1', '{card}', true, CURRENT_TIMESTAMP)"))
        for job_id in ids:
            conn.execute(text("INSERT INTO classification_jobs (id, status, photo_key, accuracy_target, model_version, "
                              f"leaf_probs, timings, created_at, updated_at) VALUES ('{job_id}', "
                              "'running', 'k', 0.9, 'v1', '{\"a.y\": 0.25, \"b.x\": 0.75}', '{}', CURRENT_TIMESTAMP, "
                              "CURRENT_TIMESTAMP)"))

    def stored() -> list:
        rows = conn.execute(text("SELECT leaf_probs FROM classification_jobs")).scalars().all()
        return [json.loads(p) if isinstance(p, str) else p for p in rows]

    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        assert stored() == [[0.75, 0.25, 0.0]] * 2
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        assert stored() == [{"b.x": 0.75, "a.y": 0.25, "c.z": 0.0}] * 2
