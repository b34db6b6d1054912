"""Database reads and writes of the gateway (synchronous; routes run them in a thread)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared import jobs, registry
from shared.model_store import ModelStore
from shared.schemas import ClassificationPublic, ClassificationResult, ErrorInfo, ModelVersionPublic, StageTimings
from shared.tables import ClassificationJob, ModelVersion


def to_public(job: ClassificationJob, rehedged: ClassificationResult | None = None,
              accuracy: float | None = None) -> ClassificationPublic:
    result = rehedged or (ClassificationResult.model_validate(job.result) if job.result else None)
    return ClassificationPublic(
        id=str(job.id),
        status=job.status.value,
        accuracy_target=accuracy if rehedged is not None and accuracy is not None else job.accuracy_target,
        model_version=job.model_version,
        answer=result.answer if result else None,
        top_predictions=result.top_predictions if result else [],
        rehedged=rehedged is not None,
        timings=StageTimings.model_validate(job.timings or {}),
        error=ErrorInfo(code=job.error_code or "failed", message=job.error or "") if job.error else None,
        created_at=job.created_at.isoformat(),
        updated_at=job.updated_at.isoformat(),
    )


def create_job(session: Session, photo_key: str, accuracy: float, owner_id: str | None = None) -> ClassificationJob:
    return jobs.create_job(session, photo_key, accuracy, owner_id)


def read_job(session: Session, job_id: str) -> ClassificationJob | None:
    return jobs.get_job(session, job_id)


def fail_job(session: Session, job_id: str, code: str, message: str) -> None:
    jobs.mark_failed(session, job_id, code, message)


def active_model(session: Session) -> str | None:
    row = registry.active_version(session)
    return row.version if row else None


def model_public(r: ModelVersion) -> ModelVersionPublic:
    return ModelVersionPublic(version=r.version, key=r.key, active=r.active, architecture=r.card.get("architecture", ""),
                              classes=len(r.card.get("classes", [])), taxonomy_version=r.card.get("taxonomy_version", ""),
                              created_at=r.created_at.isoformat())


def list_models(session: Session) -> list[ModelVersionPublic]:
    return [model_public(r) for r in registry.list_versions(session)]


def readiness(session: Session, store: ModelStore) -> dict[str, str]:
    """'ok' or the problem, for the database and the active model (reachable in the model store)."""
    checks: dict[str, str] = {}
    session.execute(text("SELECT 1"))
    checks["database"] = "ok"
    row = registry.active_version(session)
    if row is None:
        checks["model"] = "no active model version"
    else:
        checks["model"] = (f"ok ({row.version})" if store.exists(row.key)
                           else f"model {row.key!r} is missing from the store {store!r}")
    return checks
