"""API keys: only hashes stored, revocation, the bootstrap key; the `wardrobe keys` commands."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from services.cli import main as wardrobe
from shared import api_keys
from shared.auth import Role
from shared.db import run_migrations, session_scope
from shared.tables import ApiKey


@pytest.fixture
def db(database_url: str) -> str:
    run_migrations(database_url)
    return database_url


def test_a_key_resolves_to_its_role_and_only_its_hash_is_stored(db):
    with session_scope(db) as session:
        new = api_keys.create_key(session, "shop app", Role.client, max_photo_bytes=1000)
    with session_scope(db) as session:
        caller = api_keys.resolve(session, new.token)
        stored = session.scalars(select(ApiKey)).one()
        assert caller is not None and caller.id == new.row.id and caller.role is Role.client
        assert caller.max_photo_bytes == 1000
        assert new.token not in (stored.key_hash, stored.id, stored.name) and len(stored.key_hash) == 64
        assert api_keys.resolve(session, new.token + "x") is None


def test_a_revoked_key_no_longer_resolves(db):
    with session_scope(db) as session:
        new = api_keys.create_key(session, "old", Role.trainer)
        assert api_keys.revoke(session, new.row.id) is not None
        assert api_keys.resolve(session, new.token) is None
        assert api_keys.revoke(session, "no-such-id") is None


def test_bootstrap_key_is_drawn_once_or_taken_from_the_setting(db):
    with session_scope(db) as session:
        first = api_keys.ensure_bootstrap_key(session)
        assert first is not None and first.row.role is Role.operator
        assert api_keys.ensure_bootstrap_key(session) is None  # a key exists: nothing drawn again
        given = api_keys.ensure_bootstrap_key(session, "known-key-for-scripts")
        assert given is not None and api_keys.resolve(session, "known-key-for-scripts").role is Role.operator
        assert api_keys.ensure_bootstrap_key(session, "known-key-for-scripts") is None


def test_keys_cli_creates_lists_and_revokes(db, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db)
    assert wardrobe(["keys", "create", "--name", "kiosk", "--role", "client", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    with session_scope(db) as session:
        assert api_keys.resolve(session, created["key"]).role is Role.client
    assert wardrobe(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert wardrobe(["keys", "revoke", created["id"]]) == 0
    capsys.readouterr()
    assert wardrobe(["keys", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    with session_scope(db) as session:
        assert api_keys.resolve(session, created["key"]) is None
    assert wardrobe(["keys", "revoke", "nope"]) == 1
