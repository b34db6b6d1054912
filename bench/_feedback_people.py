"""People who give feedback, for the benches that learn from it (``learning_loop.py``, ``quick_cost.py``).

One place for what both need, so they simulate the same users:

* ``choose_people``: whole people, chosen by a seeded hash; the feedback givers are *small senders*
  (≤ 150 photos: most users add a few dozen garments, not the 7 senders who hold half the photos);
* ``dataset_subset``: a DATASET_DIR (the dataset's ``images.csv`` + ``images/`` layout) holding only
  some photos, so a job never learns from the people who stand in for users;
* ``draw_verdict``: the node a user's verdict names — the true leaf, ``noise`` of them a wrong leaf,
  ``partial`` of them a "Yes" to the leaf's parent (a hedged answer confirmed: a partial label);
* ``give_verdict``: a finished classification of the photo with that verdict, stored as
  ``POST /v1/classifications/{id}/feedback`` stores it (``shared.feedback.give``);
* ``bench_settings``: a fresh embedded database + model store whose released version is ``model_dir``'s
  ``RELEASE``, the trainer settings a job runs with.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
import shutil
import uuid
from collections import Counter
from pathlib import Path

from services.trainer.config import TrainerSettings
from services.trainer.data.feedback import LabelledPhoto
from shared.auth import Caller, Role
from shared.bootstrap import prepare_database
from shared.db import session_scope
from shared.feedback import give
from shared.storage import PhotoStore
from shared.tables import ClassificationJob, JobStatus
from shared.taxonomy import Taxonomy

__all__ = ["person_order", "choose_people", "dataset_subset", "draw_verdict", "caller_id", "give_verdict", "bench_settings"]



def start_run(out: Path) -> Path:
    """The benches' logging (INFO, image/plot libraries quiet) and their output folder, made."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out

def person_order(person: str, seed: int) -> str:
    """A person's place in a seeded shuffle (sort by it)."""
    return hashlib.sha256(f"{seed}:{person}".encode()).hexdigest()


def choose_people(photos: list[LabelledPhoto], seed: int, n_stream: int, n_judge: int, max_sender_photos: int,
                  max_start_photos: int) -> tuple[list, list, list]:
    """(start, stream, judge) photos; whole people in each, small senders for stream and judge.
    ``n_stream`` people, or with ``n_stream < 0`` as many as it takes to reach ``-n_stream`` photos."""
    count = Counter(p.person for p in photos)
    people = sorted(count, key=lambda s: person_order(s, seed))
    small = [s for s in people if count[s] <= max_sender_photos]
    judge = set(small[:n_judge])
    stream: set[str] = set()
    if n_stream >= 0:
        stream = set(small[n_judge:n_judge + n_stream])
    else:
        n = 0
        for s in small[n_judge:]:
            if n >= -n_stream:
                break
            stream.add(s)
            n += count[s]
    start, n = set(), 0
    for s in (s for s in people if s not in judge | stream):
        if n + count[s] > max_start_photos:
            continue
        start.add(s)
        n += count[s]
    pick = lambda group: [p for p in photos if p.person in group]  # noqa: E731
    return pick(start), pick(stream), pick(judge)


def dataset_subset(data: Path, ids: set[str], out: Path) -> Path:
    """A DATASET_DIR at ``out``: the dataset's layout (``images.csv`` + ``images/``) holding only the
    rows whose image id is in ``ids`` (``images/`` is a link to the dataset's)."""
    out.mkdir(parents=True, exist_ok=True)
    with (data / "images.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["image"] in ids]
        fields = reader.fieldnames
    with (out / "images.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    link = out / "images"
    if not link.exists():
        link.symlink_to((data / "images").resolve(), target_is_directory=True)
    return out


def draw_verdict(leaf: str, taxonomy: Taxonomy, rng: random.Random, noise: float, partial: float) -> tuple[str, str]:
    """(the node the verdict names, "true" | "wrong" | "partial")."""
    draw = rng.random()
    if draw < noise:
        return rng.choice([x for x in taxonomy.leaves if x != leaf]), "wrong"
    if draw < noise + partial and taxonomy.nodes[leaf].parent:
        return taxonomy.nodes[leaf].parent, "partial"
    return leaf, "true"


def caller_id(person: str) -> str:
    """The caller id a bench person's verdicts carry: what the gate holds people back by."""
    return f"sender-{person}"


def give_verdict(database_url: str, photos: PhotoStore, p: LabelledPhoto, node: str, taxonomy: Taxonomy) -> None:
    """A finished classification of ``p``'s photo by its sender, with a verdict naming ``node``.

    Stored directly rather than through HTTP: an upload would add an inference pass per photo that
    the learning does not use."""
    caller = Caller(id=caller_id(p.person), role=Role.client)
    with session_scope(database_url) as session:
        job = ClassificationJob(id=uuid.uuid4(), status=JobStatus.done, photo_key=photos.put(p.photo.path.read_bytes()),
                                accuracy_target=0.9, model_version=None, owner_id=caller.id,
                                result={"answer": {"node": {"name": ""}}})
        session.add(job)
        session.flush()
        give(session, str(job.id), caller, taxonomy, node=node)


def bench_settings(out: Path, model_dir: Path, dataset_dir: Path, split_file: Path, cache_root: Path, *,
                   holdout: float, tolerance: float, min_people: int, fresh: bool = True,
                   **extra: object) -> TrainerSettings:
    """Trainer settings over an embedded SQLite database and a model store under ``out``; with
    ``fresh`` both are made anew and the database's released version is ``model_dir``'s ``RELEASE``."""
    db = out / "db.sqlite3"
    if fresh:
        db.unlink(missing_ok=True)
        shutil.rmtree(out / "store", ignore_errors=True)
        shutil.rmtree(out / "var", ignore_errors=True)
    settings = TrainerSettings(
        database_url=f"sqlite:///{db}", data_dir=out / "var", model_dir=model_dir, model_store=str(out / "store"),
        dataset_dir=dataset_dir, split_file=split_file, feedback_holdout_share=holdout,
        gate_tolerance=tolerance, gate_min_people=min_people, gate_min_feedback=30, cache_dir=cache_root,
        heartbeat_interval_s=5.0, training_heartbeat_timeout_s=3600.0, **extra)
    if fresh:
        prepare_database(settings.resolved_database_url, settings.model_dir, model_store=settings.model_store)
    return settings
