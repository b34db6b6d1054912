"""Database reads and writes of the gateway (synchronous; routes run them in a thread)."""

from __future__ import annotations

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from services.gateway.errors import (ClassificationNotFinished, Forbidden, InvalidParameter, JobNotFound, KeyNotFound,
                                     ModelNotFound, ModelUnavailable, NothingToRollBack, PhotoExpired,
                                     TrainingJobFinished, TrainingJobNotFound, UnknownNode)
from shared import api_keys, feedback, jobs, registry, training_jobs, wardrobe
from shared.auth import Caller, Role, operator_only_options
from shared.model_store import ModelStore
from shared.schemas import (ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ClassificationPublic, ClassificationResult,
                            ErrorInfo, FeedbackCreate, FeedbackListPublic, FeedbackPublic, GateDecision, KeepPublic,
                            ModelActivationPublic, ModelVersionPublic, NodeRef, ScoredNode, StageTimings,
                            TrainingJobCreate, TrainingJobPublic, WardrobeItem, WardrobePublic)
from shared.tables import ClassificationJob, Feedback, ModelVersion, TrainingJob
from shared.taxonomy import Taxonomy


def to_public(job: ClassificationJob) -> ClassificationPublic:
    """The job as the API shows it (a re-hedged answer: ``jobcache.JobView.rehedged``)."""
    result = ClassificationResult.model_validate(job.result) if job.result else None
    return ClassificationPublic(
        id=str(job.id),
        status=job.status.value,
        accuracy_target=job.accuracy_target,
        model_version=job.model_version,
        answer=result.answer if result else None,
        top_predictions=result.top_predictions if result else [],
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


# --- feedback ------------------------------------------------------------------------------------
def feedback_public(row: Feedback) -> FeedbackPublic:
    return FeedbackPublic(id=str(row.id), classification_id=str(row.classification_id), caller_id=row.caller_id,
                          photo_key=row.photo_key, model_version=row.model_version, answer=row.answer, node=row.node,
                          correct=row.correct, current=row.is_current, created_at=row.created_at.isoformat())


def give_feedback(session: Session, classification_id: str, caller: Caller, body: FeedbackCreate,
                  taxonomy: Taxonomy) -> FeedbackPublic:
    try:
        row = feedback.give(session, classification_id, caller, taxonomy, correct=bool(body.correct),
                            node=body.node)
    except feedback.UnknownClassification as exc:
        raise JobNotFound(str(exc)) from None
    except feedback.ClassificationNotFinished as exc:
        raise ClassificationNotFinished(str(exc)) from None
    except feedback.UnknownNode as exc:
        raise UnknownNode(str(exc)) from None
    except feedback.FeedbackError as exc:
        raise InvalidParameter(str(exc)) from None
    return feedback_public(row)


def read_feedback(session: Session, classification_id: str, caller: Caller) -> FeedbackListPublic:
    rows = feedback.history(session, classification_id, caller)
    if rows is None:
        raise JobNotFound(f"no classification with id {classification_id!r}")
    items = [feedback_public(r) for r in rows]
    return FeedbackListPublic(current=[f for f in items if f.current], history=items)


# --- retention ---------------------------------------------------------------------------------
def set_keep(session: Session, job_id: str, caller: Caller, keep: bool) -> KeepPublic:
    """Mark a caller's classification kept (or not) past retention; another's is as absent as none."""
    job = jobs.get_job(session, job_id)
    if job is None or not caller.owns(job.owner_id):
        raise JobNotFound(f"no classification job with id {job_id!r}")
    if job.photo_purged_at is not None and keep:
        raise PhotoExpired(f"classification {job_id}'s photo has already expired: nothing to keep")
    session.execute(update(ClassificationJob).where(ClassificationJob.id == job.id).values(keep=keep))
    return KeepPublic(id=str(job.id), keep=keep)



# --- the wardrobe (the web page) ------------------------------------------------------------------
def _node_ref(taxonomy: Taxonomy, name: str) -> NodeRef:
    node = taxonomy.nodes.get(name)
    return NodeRef(name=name, display=node.display, icon=node.icon) if node else NodeRef(name=name, display=name, icon="")


def _agrees(taxonomy: Taxonomy, verdict: Feedback) -> bool:
    """The verdict lies on the answer's own path: more specific (a Yes made exact) or more general (a
    Yes to a re-hedged, vaguer answer). Anything else corrected it."""
    if verdict.correct or verdict.node not in taxonomy.nodes or verdict.answer not in taxonomy.nodes:
        return verdict.correct
    return verdict.node in taxonomy.ancestors(verdict.answer)


def read_wardrobe(session: Session, caller: Caller, taxonomy: Taxonomy, limit: int) -> WardrobePublic:
    items = []
    for g in wardrobe.garments(session, caller.id, limit):
        result = ClassificationResult.model_validate(g.job.result) if g.job.result else None
        answer: ScoredNode | None = result.answer.node if result else None
        verdict = None if g.verdict is None else ("confirmed" if _agrees(taxonomy, g.verdict) else "corrected")
        label = _node_ref(taxonomy, g.verdict.node) if g.verdict else answer
        items.append(WardrobeItem(id=str(g.job.id), status=g.job.status.value, answer=answer, verdict=verdict,
                                  label=NodeRef.model_validate(label.model_dump()) if label else None,
                                  thumbnail_url=f"/v1/classifications/{g.job.id}/thumbnail",
                                  created_at=g.job.created_at.isoformat()))
    return WardrobePublic(items=items)


def photo_key_of(session: Session, job_id: str, caller: Caller) -> str:
    try:
        return wardrobe.owned_job(session, job_id, caller).photo_key
    except wardrobe.UnknownGarment as exc:
        raise JobNotFound(str(exc)) from None


def remove_garment(session: Session, job_id: str, caller: Caller, keep_for_training: bool) -> wardrobe.Removal:
    try:
        return wardrobe.remove(session, job_id, caller, keep_for_training)
    except wardrobe.UnknownGarment as exc:
        raise JobNotFound(str(exc)) from None


# --- training jobs -------------------------------------------------------------------------------
def training_job_public(job: TrainingJob) -> TrainingJobPublic:
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    return TrainingJobPublic(
        id=str(job.id), mode=job.mode, options=job.options or {}, status=job.status.value, stage=job.stage,
        progress=job.progress or 0.0, eta_s=training_jobs.eta_seconds(job), log_tail=job.log_tail or [],
        metrics=job.metrics or {}, candidate_version=job.candidate_version,
        gate=GateDecision.model_validate(job.gate) if job.gate else None,
        promoted=bool((job.metrics or {}).get("promoted")), requested_by=job.requested_by, worker=job.worker,
        cancel_requested=job.cancel_requested,
        error=ErrorInfo(code=job.error_code or "failed", message=job.error or "") if job.error else None,
        created_at=job.created_at.isoformat(), started_at=iso(job.started_at), finished_at=iso(job.finished_at),
        heartbeat_at=iso(job.heartbeat_at),
    )


def create_training_job(session: Session, body: TrainingJobCreate, caller: Caller) -> TrainingJobPublic:
    options = body.model_dump(exclude={"mode"}, exclude_defaults=True)
    if reason := operator_only_options(options, caller.role):
        raise Forbidden(reason)
    return training_job_public(training_jobs.create(session, body.mode, options, caller.id))


def _own_training_job(session: Session, job_id: str, caller: Caller) -> None:
    """404 for a job that does not exist *or* that another trainer asked for: a trainer cannot
    tell the two apart (as with another client's classification); an operator sees every job."""
    job = training_jobs.get(session, job_id)
    if job is None or not caller.owns(job.requested_by):
        raise TrainingJobNotFound(f"no training job with id {job_id!r}")


def read_training_job(session: Session, job_id: str, caller: Caller) -> TrainingJobPublic:
    _own_training_job(session, job_id, caller)
    return training_job_public(training_jobs.get(session, job_id))


def list_training_jobs(session: Session, limit: int, status: str | None, caller: Caller) -> list[TrainingJobPublic]:
    requested_by = None if caller.role is Role.operator else caller.id
    return [training_job_public(j) for j in training_jobs.list_jobs(session, limit, status, requested_by)]


def cancel_training_job(session: Session, job_id: str, caller: Caller) -> TrainingJobPublic:
    _own_training_job(session, job_id, caller)
    try:
        job = training_jobs.request_cancel(session, job_id)
    except training_jobs.JobFinished as exc:
        raise TrainingJobFinished(str(exc)) from None
    if job is None:
        raise TrainingJobNotFound(f"no training job with id {job_id!r}")
    return training_job_public(job)


def fail_training_job(session: Session, job_id: str, code: str, message: str) -> None:
    training_jobs.fail(session, job_id, code, message)


# --- model management ----------------------------------------------------------------------------
def activate_model(session: Session, version: str, store: ModelStore, caller_id: str) -> ModelVersionPublic:
    row = registry.get_version(session, version)
    if row is None:
        known = ", ".join(r.version for r in registry.list_versions(session)[:10])
        raise ModelNotFound(f"no model version {version!r} (known: {known or 'none'})")
    if not store.exists(row.key):
        raise ModelUnavailable(f"model version {version!r} is registered but {row.key!r} is not in the model store")
    return model_public(registry.activate(session, version, kind="activate", caller_id=caller_id))


def rollback_model(session: Session, store: ModelStore, caller_id: str) -> ModelVersionPublic:
    try:
        target = registry.rollback_target(session)
    except registry.NothingToRollBack as exc:
        raise NothingToRollBack(str(exc)) from None
    row = registry.get_version(session, target)
    if not store.exists(row.key):
        raise ModelUnavailable(f"cannot roll back to {target!r}: {row.key!r} is not in the model store")
    return model_public(registry.rollback(session, caller_id=caller_id))


def model_history(session: Session, limit: int) -> list[ModelActivationPublic]:
    return [ModelActivationPublic(version=a.version, previous_version=a.previous_version, kind=a.kind,
                                  caller_id=a.caller_id, reason=a.reason, created_at=a.created_at.isoformat())
            for a in registry.activations(session, limit)]


def create_key(session: Session, body: ApiKeyCreate) -> ApiKeyCreated:
    new = api_keys.create_key(session, body.name, Role(body.role), rate_limit_per_minute=body.rate_limit_per_minute,
                              max_photo_bytes=body.max_photo_bytes)
    return ApiKeyCreated(**api_keys.public(new.row).model_dump(), key=new.token)


def list_keys(session: Session, include_revoked: bool) -> list[ApiKeyPublic]:
    return [api_keys.public(r) for r in api_keys.list_keys(session, include_revoked=include_revoked)]


def revoke_key(session: Session, key_id: str) -> ApiKeyPublic:
    """Revoke (idempotent: an already revoked key keeps its first ``revoked_at``); the row stays,
    naming the owner of what the key created."""
    row = api_keys.revoke(session, key_id)
    if row is None:
        raise KeyNotFound(f"no API key with id {key_id!r}")
    return api_keys.public(row)
