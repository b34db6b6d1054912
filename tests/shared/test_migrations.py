"""Migrations on a real database: one head, model paths become store keys, probabilities become lists."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

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


def test_browser_session_keys_get_the_default_cookie_expiry_and_other_keys_none(database_url):
    """0007: a session key's cookie was issued when its row was made, valid SESSION_MAX_AGE_S (180 days by
    default); the wardrobe's retention exemption ends then. Other keys have no end."""
    cfg = _config(database_url)
    rows = {"s1": ("browser session", "client"), "op": ("bootstrap", "operator"), "app": ("browser session", "trainer")}
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        for key_id, (name, role) in rows.items():
            conn.execute(text("INSERT INTO api_keys (id, name, role, key_hash, created_at) VALUES "
                              f"('{key_id}', '{name}', '{role}', 'h-{key_id}', :at)"),
                         {"at": datetime(2026, 1, 1, 12, tzinfo=timezone.utc)})
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
        got = dict(conn.execute(text("SELECT id, expires_at FROM api_keys")).all())
        # SQLite gives the stored text back, PostgreSQL an aware datetime
        expires = got["s1"] if isinstance(got["s1"], datetime) else datetime.fromisoformat(got["s1"])
        assert expires.replace(tzinfo=expires.tzinfo or timezone.utc) == datetime(2026, 6, 30, 12, tzinfo=timezone.utc)
        assert got["op"] is None and got["app"] is None
    with get_engine(database_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
        assert "expires_at" not in {c["name"] for c in inspect(conn).get_columns("api_keys")}
