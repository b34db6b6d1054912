"""All SQLAlchemy tables, in one module. Pydantic schemas live apart in ``shared.schemas``.

``classification_jobs`` is the source of truth for a job: pending → running → done | failed.
``training_jobs`` likewise for a retrain: queued → running → done | failed | cancelled.
``feedback`` is append-only; exactly one row per (classification, caller) is ``current``.
``model_activations`` is the history of which version served when (rollback reads it).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.auth import Role

__all__ = ["Base", "JobStatus", "ClassificationJob", "ModelVersion", "ModelActivation", "Feedback",
           "TrainingJobStatus", "TrainingJob", "ApiKey", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class JobStatus(str, enum.Enum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.done, JobStatus.failed)


class ClassificationJob(Base):
    __tablename__ = "classification_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="job_status", native_enum=False, length=16), default=JobStatus.pending
    )
    photo_key: Mapped[str] = mapped_column(String(64))  # sha256 hex of the photo bytes
    owner_id: Mapped[str | None] = mapped_column(String(64))  # the API key id that created it (Caller.id)
    accuracy_target: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(128))
    # the network's class probabilities as it gave them, in the model card's class order
    leaf_probs: Mapped[list[float] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # ClassificationResult
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # stage -> milliseconds
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # how many times the job was sent to the workers: the gateway's send, then the sweeper's
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # optimistic locking: every UPDATE of a row names the version it read (SQLAlchemy's
    # version_id_col), so of two workers racing on a job (a redelivered message) only the first
    # write lands; the other gets StaleDataError, retries, re-reads the row and finds it done
    version_id: Mapped[int] = mapped_column(Integer, server_default="1")
    # retention (shared.retention): a person asked to keep it (never expired); when its photo went
    keep: Mapped[bool | None] = mapped_column(Boolean)
    photo_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_classification_jobs_status", "status"),
                      Index("ix_classification_jobs_owner_id", "owner_id"),
                      Index("ix_classification_jobs_status_updated", "status", "updated_at"),
                      Index("ix_classification_jobs_created", "created_at"),
                      Index("ix_classification_jobs_photo_key", "photo_key"))
    __mapper_args__ = {"version_id_col": version_id}


class ModelVersion(Base):
    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    # where the version lives, relative to the model store's root (shared.model_store): never an
    # absolute path, so every worker resolves it against its own mount or bucket
    key: Mapped[str] = mapped_column(String(255))
    card: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelActivation(Base):
    """One row per change of the active version (append-only). ``kind``: bootstrap, activate,
    promotion or rollback; a rollback goes back past the activations it undid."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(128), ForeignKey("model_versions.version"))
    previous_version: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    caller_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feedback(Base):
    """A caller's verdict on a finished classification, stored with what it judged (photo, model
    version, answer). Rows are never updated except ``is_current``, which moves to the newest row of
    its (classification, caller): a partial unique index keeps one current row per pair."""

    __tablename__ = "feedback"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    classification_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("classification_jobs.id"))
    caller_id: Mapped[str] = mapped_column(String(128))
    photo_key: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    answer: Mapped[str] = mapped_column(String(255))  # dotted node the classification answered
    correct: Mapped[bool] = mapped_column(Boolean)  # the answer was right (node == answer or below it)
    node: Mapped[str] = mapped_column(String(255))  # the true node per the caller ("at least this")
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ix_feedback_classification", "classification_id"),
        Index("ix_feedback_created", "created_at"),
        Index("ix_feedback_caller", "caller_id"),
        Index("ix_feedback_photo_key", "photo_key"),
        Index("ix_feedback_current_pair", "classification_id", "caller_id", unique=True,
              sqlite_where=text("is_current"), postgresql_where=text("is_current")),
    )


class TrainingJobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TrainingJobStatus.done, TrainingJobStatus.failed, TrainingJobStatus.cancelled)


class TrainingJob(Base):
    """A retrain or recalibration job. ``running_slot`` is True while running and NULL otherwise;
    its unique index lets at most one job run at a time, whatever the number of trainer workers."""

    __tablename__ = "training_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    mode: Mapped[str] = mapped_column(String(32))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[TrainingJobStatus] = mapped_column(
        Enum(TrainingJobStatus, name="training_job_status", native_enum=False, length=16),
        default=TrainingJobStatus.queued,
    )
    running_slot: Mapped[bool | None] = mapped_column(Boolean, unique=True)
    requested_by: Mapped[str | None] = mapped_column(String(128))
    stage: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    log_tail: Mapped[list[str]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    candidate_version: Mapped[str | None] = mapped_column(String(128))
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # GateDecision
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(255))  # Celery node running it
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_training_jobs_status", "status"),)


class ApiKey(Base):
    """An API key: only the sha256 of the secret is stored (keys are 256-bit random tokens, so a
    plain hash cannot be brute-forced); ``id`` is public and names the key in lists, logs and
    as the owner of what it creates."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(Enum(Role, name="api_key_role", native_enum=False, length=16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)  # None: the gateway's default; 0: none
    max_photo_bytes: Mapped[int | None] = mapped_column(Integer)  # None: the gateway's limit
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # a browser session's key: when its cookie stops working (nothing else can act as the key, so
    # after this nobody reaches its wardrobe and retention's clocks apply again); None: no end
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
