"""Feedback on classifications: append-only verdicts, one current per (classification, caller).

A verdict is ``correct`` (the answer was right) or a ``node`` (the truth is at least this node: a
leaf is an exact label, an inner node says no more than its subtree). Each is stored with what it
judged (photo key, model version, answered node), so the trainer can learn from it without
asking the classification again. Giving feedback locks the classification's row first, so two
concurrent verdicts on one classification are serialised: the later one becomes current, the
earlier one stays in the history, and a partial unique index guarantees one current row per pair.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.auth import Caller
from shared.jobs import parse_job_id
from shared.tables import ClassificationJob, Feedback, JobStatus
from shared.taxonomy import Taxonomy

__all__ = ["give", "history", "current_feedback", "count_since", "FeedbackError", "UnknownClassification",
           "ClassificationNotFinished", "UnknownNode"]


class FeedbackError(ValueError):
    """Feedback that cannot be stored; the subclass says why."""


class UnknownClassification(FeedbackError):
    pass


class ClassificationNotFinished(FeedbackError):
    pass


class UnknownNode(FeedbackError):
    pass


def _answered_node(job: ClassificationJob) -> str:
    return str(((job.result or {}).get("answer") or {}).get("node", {}).get("name", ""))


def give(session: Session, classification_id: str, caller: Caller, taxonomy: Taxonomy, *,
         correct: bool = False, node: str | None = None) -> Feedback:
    """Store a verdict and make it the caller's current one for this classification (a client may
    judge only its own classifications: another's is as unknown as none)."""
    key = parse_job_id(classification_id)
    job = None
    if key is not None:  # the row lock serialises concurrent feedback on one classification
        job = session.scalars(select(ClassificationJob).where(ClassificationJob.id == key).with_for_update()).first()
    if job is None or not caller.owns(job.owner_id):
        raise UnknownClassification(f"no classification with id {classification_id!r}")
    if job.status is not JobStatus.done:
        raise ClassificationNotFinished(
            f"classification {classification_id} is {job.status.value}: feedback needs a finished answer")
    answer = _answered_node(job)
    if node is not None:
        if node not in taxonomy.nodes or node == "":
            raise UnknownNode(f"node {node!r} is not in taxonomy {taxonomy.version}; "
                              "send a dotted name from GET /v1/taxonomy (e.g. 'body.top.t-shirt')")
        correct = answer in taxonomy.ancestors(node)  # the truth lies inside what was answered
    elif not correct:
        raise FeedbackError('send {"correct": true} or {"node": "<dotted name>"}')
    else:
        node = answer
    session.execute(update(Feedback).where(Feedback.classification_id == job.id, Feedback.caller_id == caller.id,
                                           Feedback.is_current.is_(True)).values(is_current=False))
    row = Feedback(id=uuid.uuid4(), classification_id=job.id, caller_id=caller.id, photo_key=job.photo_key,
                   model_version=job.model_version, answer=answer, correct=correct, node=node, is_current=True)
    session.add(row)
    session.flush()
    return row


def history(session: Session, classification_id: str, caller: Caller) -> list[Feedback] | None:
    """Every verdict on the classification, oldest first; None if the classification is unknown
    (or another client's)."""
    key = parse_job_id(classification_id)
    job = session.get(ClassificationJob, key) if key is not None else None
    if job is None or not caller.owns(job.owner_id):
        return None
    return list(session.scalars(select(Feedback).where(Feedback.classification_id == key)
                                .order_by(Feedback.created_at, Feedback.id)))


def current_feedback(session: Session, since: datetime | None = None) -> list[Feedback]:
    """The current verdicts (one per classification and caller), oldest first: the training data."""
    query = select(Feedback).where(Feedback.is_current.is_(True)).order_by(Feedback.created_at)
    if since is not None:
        query = query.where(Feedback.created_at > since)
    return list(session.scalars(query))


def count_since(session: Session, since: datetime | None) -> int:
    """Feedback items (every verdict, current or not) given after ``since`` (all if None)."""
    query = select(func.count()).select_from(Feedback)
    if since is not None:
        query = query.where(Feedback.created_at > since)
    return int(session.scalar(query) or 0)
