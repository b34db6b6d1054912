"""``wardrobe data delete --client KEY_ID`` through the real command line parser and settings."""

from __future__ import annotations

import json

from services.cli import main
from shared import jobs
from shared.db import run_migrations, session_scope
from shared.storage import PhotoStore
from shared.tables import ClassificationJob, JobStatus


def test_data_delete_removes_one_clients_rows_and_photos(database_url, tmp_path, monkeypatch, capsys):
    run_migrations(database_url)
    store = PhotoStore(tmp_path / "photos")
    mine, theirs = store.put(b"mine"), store.put(b"theirs")
    with session_scope(database_url) as session:
        for key, owner in ((mine, "key-a"), (theirs, "key-b")):
            jobs.create_job(session, key, 0.9, owner_id=owner).status = JobStatus.done
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PHOTO_DIR", str(store.root))
    assert main(["data", "delete", "--client", "key-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"client": "key-a", "classifications": 1, "feedback": 0,
                                                   "photo_files": 1}
    with session_scope(database_url) as session:
        assert [j.owner_id for j in session.query(ClassificationJob)] == ["key-b"]
    assert not store.path(mine).exists() and store.path(theirs).exists()
