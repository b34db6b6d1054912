"""Retention with a fake clock (``now`` is an argument; rows and files are dated before it) against a
real database and a real photo store; and deleting one person's data."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta

import pytest

from sqlalchemy import func, select

from shared import api_keys, jobs, wardrobe
from shared.auth import Caller, Role
from shared.db import run_migrations, session_scope
from shared.retention import PHOTO_GRACE_S, RetentionPolicy, delete_client_data, expire
from shared.storage import PhotoStore
from shared.tables import ClassificationJob, Feedback, JobStatus, utcnow

POLICY = RetentionPolicy(photos_days=30, classifications_days=90, feedback_days=365)
NOW = utcnow() + timedelta(days=1000)  # the fake clock: far from the real one, which nothing here reads


@pytest.fixture
def db(database_url: str) -> str:
    run_migrations(database_url)
    return database_url


@pytest.fixture
def store(tmp_path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


def photo(store: PhotoStore, name: str, age_days: float = 0.0) -> str:
    key = store.put(f"photo {name}".encode())
    at = (NOW - timedelta(days=age_days)).timestamp()
    os.utime(store.path(key), (at, at))  # stored when its row was made
    return key


def job(db: str, key: str, age_days: float, *, owner: str = "client-a", status: JobStatus = JobStatus.done,
        keep: bool | None = None, feedback_age_days: float | None = None, feedback_by: str | None = None) -> str:
    with session_scope(db) as session:
        row = jobs.create_job(session, key, 0.9, owner_id=owner)
        row.status, row.keep, row.created_at = status, keep, NOW - timedelta(days=age_days)
        if feedback_age_days is not None:
            session.add(Feedback(id=uuid.uuid4(), classification_id=row.id, caller_id=feedback_by or owner,
                                 photo_key=key, model_version="v1", answer="feet.shoes", correct=True,
                                 node="feet.shoes", is_current=True,
                                 created_at=NOW - timedelta(days=feedback_age_days)))
        return str(row.id)


def state(db: str, store: PhotoStore, job_id: str, key: str) -> tuple[bool, bool, int]:
    """(row exists, photo file exists, feedback rows on it)."""
    with session_scope(db) as session:
        row = session.get(ClassificationJob, uuid.UUID(job_id))
        n = session.query(Feedback).filter(Feedback.classification_id == uuid.UUID(job_id)).count()
        return row is not None, store.path(key).is_file(), n


def test_expired_photos_rows_and_feedback_go_and_the_kept_stay(db, store):
    cases = {  # name: (job kwargs, expected (row, photo file, feedback rows) after one pass)
        "young": (dict(age_days=10), (True, True, 0)),
        "photo expired": (dict(age_days=40), (True, False, 0)),
        "row expired": (dict(age_days=100), (False, False, 0)),
        "with young feedback": (dict(age_days=100, feedback_age_days=100), (True, True, 1)),  # the trainer's
        "feedback expired": (dict(age_days=400, feedback_age_days=400), (False, False, 0)),
        "kept": (dict(age_days=400, keep=True, feedback_age_days=400), (True, True, 1)),
        "kept, no feedback": (dict(age_days=400, keep=True), (True, True, 0)),
        "unfinished": (dict(age_days=400, status=JobStatus.pending), (True, True, 0)),
        "failed, old": (dict(age_days=100, status=JobStatus.failed), (False, False, 0)),
    }
    made = {}
    for name, (kw, _) in cases.items():
        key = photo(store, name, kw["age_days"])
        made[name] = (job(db, key, **kw), key)
    counts = expire(db, store, POLICY, NOW)
    got = {name: state(db, store, *made[name]) for name in cases}
    assert got == {name: expected for name, (_, expected) in cases.items()}
    assert counts == {"feedback": 1, "classifications": 3, "photos_purged": 1, "photo_files": 4}
    assert expire(db, store, POLICY, NOW) == {"feedback": 0, "classifications": 0, "photos_purged": 0,
                                              "photo_files": 0}  # nothing twice


def test_a_photo_another_row_still_needs_stays(db, store):
    shared = photo(store, "same bytes", age_days=40)
    old = job(db, shared, age_days=40)  # its photo expired ...
    young = job(db, shared, age_days=2, owner="client-b")  # ... but the same bytes came again
    expire(db, store, POLICY, NOW)
    assert store.path(shared).is_file()
    assert state(db, store, old, shared)[0] and state(db, store, young, shared)[0]
    with session_scope(db) as session:
        assert session.get(ClassificationJob, uuid.UUID(old)).photo_purged_at is not None
    # once the young row's photo expires too, nothing needs the file
    expire(db, store, POLICY, NOW + timedelta(days=29))
    assert not store.path(shared).is_file()


def test_a_photo_stored_again_just_now_waits_for_the_next_pass(db, store):
    key = photo(store, "re-uploaded", age_days=100)
    job(db, key, age_days=100)
    at = (NOW - timedelta(seconds=PHOTO_GRACE_S / 2)).timestamp()
    os.utime(store.path(key), (at, at))  # the same bytes were uploaded again a moment ago
    assert expire(db, store, POLICY, NOW)["classifications"] == 1
    assert store.path(key).is_file()  # its new row may be a moment away ...
    job(db, key, age_days=0)  # ... and here it is: the file is that row's now, and expires with it
    expire(db, store, POLICY, NOW + timedelta(days=29))
    assert store.path(key).is_file()
    expire(db, store, POLICY, NOW + timedelta(days=31))
    assert not store.path(key).is_file()


def test_zero_days_keeps_forever(db, store):
    key = photo(store, "forever", age_days=5000)
    job_id = job(db, key, age_days=5000, feedback_age_days=5000)
    forever = RetentionPolicy(photos_days=0, classifications_days=0, feedback_days=0)
    assert expire(db, store, forever, NOW) == {"feedback": 0, "classifications": 0, "photos_purged": 0,
                                               "photo_files": 0}
    assert state(db, store, job_id, key) == (True, True, 1)


def test_deleting_one_persons_data_leaves_nothing_of_theirs(db, store):
    mine = photo(store, "mine")
    also_theirs = photo(store, "same bytes, two people")
    a1 = job(db, mine, age_days=1, owner="key-a", feedback_age_days=1)  # a's verdict
    a2 = job(db, also_theirs, age_days=1, owner="key-a", keep=True, feedback_age_days=1, feedback_by="key-t")
    b1 = job(db, also_theirs, age_days=1, owner="key-b", feedback_age_days=1)
    counts = delete_client_data(db, store, "key-a")
    assert counts == {"classifications": 2, "feedback": 2, "photo_files": 1}
    with session_scope(db) as session:
        assert session.query(ClassificationJob).filter(ClassificationJob.owner_id == "key-a").count() == 0
        assert session.query(Feedback).filter(Feedback.caller_id == "key-a").count() == 0
        assert session.query(Feedback).filter(Feedback.classification_id.in_(
            [uuid.UUID(a1), uuid.UUID(a2)])).count() == 0  # the trainer's verdict on a's photo went too
        assert session.query(Feedback).filter(Feedback.photo_key == mine).count() == 0
    assert not store.path(mine).is_file()
    assert store.path(also_theirs).is_file()  # key-b sent the same bytes: their copy stays
    assert state(db, store, b1, also_theirs) == (True, True, 1)
    assert delete_client_data(db, store, "key-a") == {"classifications": 0, "feedback": 0, "photo_files": 0}


def test_the_policy_cutoffs():
    now = datetime(2026, 12, 7)
    assert POLICY.cutoff(30, now) == datetime(2026, 11, 7)
    assert POLICY.cutoff(0, now) is None


# --- a digital wardrobe lasts as long as its owner keeps it ------------------------------------------
# Owners above are bare ids with no key row, so nothing of theirs is in a wardrobe (the owner's key must
# be usable). Below, owners are real key rows.
OLD = 400  # days: past every clock of POLICY


def owner_key(db: str, *, revoked: bool = False, expires_in_days: float | None = None, role: Role = Role.client) -> str:
    """A key row (its id is what owns classifications and signs verdicts), dated on the fake clock."""
    with session_scope(db) as session:
        row = api_keys.create_key(session, "browser session" if expires_in_days is not None else "app", role).row
        row.created_at = NOW - timedelta(days=5000)
        row.revoked_at = NOW - timedelta(days=1) if revoked else None
        row.expires_at = None if expires_in_days is None else NOW + timedelta(days=expires_in_days)
        return row.id


def verdict(db: str, job_id: str, caller: str, age_days: float, *, current: bool = True,
            node: str = "feet.shoes") -> None:
    with session_scope(db) as session:
        row = session.get(ClassificationJob, uuid.UUID(job_id))
        session.add(Feedback(id=uuid.uuid4(), classification_id=row.id, caller_id=caller, photo_key=row.photo_key,
                             model_version="v1", answer="feet.shoes", correct=node == "feet.shoes", node=node,
                             is_current=current, created_at=NOW - timedelta(days=age_days)))


def verdicts(db: str, job_id: str) -> list[tuple[str, str, bool]]:
    with session_scope(db) as session:
        return sorted((f.caller_id, f.node, f.is_current) for f in session.scalars(
            select(Feedback).where(Feedback.classification_id == uuid.UUID(job_id))))


def wardrobe_item(store: PhotoStore, db: str, name: str, owner: str) -> tuple[str, str]:
    """A garment its owner corrected OLD days ago (corrected again later: the first verdict is superseded)."""
    key = photo(store, name, OLD)
    job_id = job(db, key, age_days=OLD, owner=owner)
    verdict(db, job_id, owner, OLD + 1, current=False, node="feet")
    verdict(db, job_id, owner, OLD, node="feet.boots")
    return job_id, key


def test_a_garment_in_its_owners_wardrobe_outlives_every_clock(db, store):
    owner, trainer = owner_key(db), owner_key(db, role=Role.trainer)
    job_id, key = wardrobe_item(store, db, "my boots", owner)
    verdict(db, job_id, trainer, OLD)  # a trainer's verdict on it: the wardrobe does not show it
    counts = expire(db, store, POLICY, NOW)
    assert state(db, store, job_id, key)[:2] == (True, True)  # row and photo
    assert verdicts(db, job_id) == [(owner, "feet.boots", True)]  # only what the wardrobe shows stays
    assert counts == {"feedback": 2, "classifications": 0, "photos_purged": 0, "photo_files": 0}
    # years later it is still there, the way its owner sees it
    assert expire(db, store, POLICY, NOW + timedelta(days=3650))["feedback"] == 0
    assert state(db, store, job_id, key) == (True, True, 1)
    with session_scope(db) as session:
        assert session.get(ClassificationJob, uuid.UUID(job_id)).photo_purged_at is None
        [garment] = wardrobe.garments(session, owner, limit=10)
        assert str(garment.job.id) == job_id and garment.verdict.node == "feet.boots"


def test_what_is_not_or_no_longer_in_a_wardrobe_expires(db, store):
    """Each garment below is OLD, with a verdict OLD days old: one pass takes all of it."""
    owner = owner_key(db)
    someone_elses = job(db, photo(store, "judged by a trainer", OLD), age_days=OLD, owner=owner)
    verdict(db, someone_elses, owner_key(db, role=Role.trainer), OLD)  # a verdict, but not the owner's
    operators = job(db, photo(store, "judged by an operator", OLD), age_days=OLD, owner=owner)
    verdict(db, operators, owner_key(db, role=Role.operator), OLD)
    given_away, _ = wardrobe_item(store, db, "given to training", owner)
    with session_scope(db) as session:  # DELETE ...?keep_for_training=true: out of the wardrobe for good
        wardrobe.remove(session, given_away, Caller(id=owner, role=Role.client), keep_for_training=True)
    revoked, _ = wardrobe_item(store, db, "of a revoked key", owner_key(db, revoked=True))
    ended, _ = wardrobe_item(store, db, "of an ended browser session", owner_key(db, expires_in_days=-1))
    live, live_key = wardrobe_item(store, db, "of a live browser session", owner_key(db, expires_in_days=30))
    expire(db, store, POLICY, NOW)
    with session_scope(db) as session:
        left = {str(i) for i in session.scalars(select(ClassificationJob.id))}
        assert session.scalar(select(func.count()).select_from(Feedback)) == 1  # the live session's verdict
    assert left == {live}
    assert [p for p in store.root.rglob("*") if p.is_file()] == [store.path(live_key)]
    # the live session's cookie expires in 30 days: then nobody can reach its wardrobe, and the clocks apply
    assert expire(db, store, POLICY, NOW + timedelta(days=31))["classifications"] == 1
    assert not store.path(live_key).is_file()


def test_with_the_setting_off_a_wardrobe_expires_like_anything_else(db, store):
    job_id, key = wardrobe_item(store, db, "my boots", owner_key(db))
    off = RetentionPolicy(photos_days=30, classifications_days=90, feedback_days=365, keep_wardrobe=False)
    assert expire(db, store, off, NOW) == {"feedback": 2, "classifications": 1, "photos_purged": 0, "photo_files": 1}
    assert state(db, store, job_id, key) == (False, False, 0)


def test_a_young_wardrobe_garment_keeps_its_photo_past_the_photo_clock(db, store):
    """Confirmed within the feedback clock, as before; and its photo outlives RETENTION_PHOTOS_DAYS."""
    owner = owner_key(db)
    key = photo(store, "new shoes", 40)
    job_id = job(db, key, age_days=40, owner=owner)
    verdict(db, job_id, owner, 39)
    expire(db, store, POLICY, NOW + timedelta(days=3650))
    assert state(db, store, job_id, key) == (True, True, 1)


def test_removing_a_wardrobe_garment_or_deleting_the_persons_data_still_deletes_at_once(db, store):
    owner = owner_key(db)
    removed, removed_key = wardrobe_item(store, db, "removed", owner)
    with session_scope(db) as session:
        removal = wardrobe.remove(session, removed, Caller(id=owner, role=Role.client), keep_for_training=False)
    assert removal.photo_key_to_delete == removed_key  # the route deletes the file after the commit
    assert state(db, store, removed, removed_key)[0::2] == (False, 0)
    kept_items = [wardrobe_item(store, db, f"mine {i}", owner) for i in range(2)]
    assert delete_client_data(db, store, owner) == {"classifications": 2, "feedback": 4, "photo_files": 2}
    assert all(state(db, store, *item) == (False, False, 0) for item in kept_items)
