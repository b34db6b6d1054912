"""Training jobs for trainers: validate, store, enqueue, answer. The work is the trainer's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, QueueDep, TrainerDep
from services.gateway.errors import QueueUnavailable
from shared.schemas import ErrorResponse, TrainingJobCreate, TrainingJobPublic, TrainingJobStatusName

router = APIRouter(prefix="/v1/training-jobs", tags=["training jobs"])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)}
# A trainer sees and cancels only the jobs it asked for (another's answer 404, as if absent); an
# operator every job. Promotion options (promote, tolerance) are the operator's (403 for a trainer).


@router.post(
    "", status_code=202, response_model=TrainingJobPublic, responses=ERRORS, summary="Start a retrain or recalibration",
    description='`{"mode": "quick" | "full" | "recalibrate"}` plus options (`version`, `promote`, `tolerance`; '
    "`recipe_preset`, `recipe` for full). Unknown options are refused by name (422). One job runs at a time; "
    "the others wait queued. `promote` other than 'gate' and `tolerance` are an operator's (403 for a trainer). "
    "Answers 202 with the job and a Location header.",
)
async def create_training_job(body: TrainingJobCreate, response: Response, db: DatabaseDep, queue: QueueDep,
                              caller: TrainerDep) -> TrainingJobPublic:
    job = await db.run(crud.create_training_job, body, caller)  # committed before enqueueing
    try:
        await queue.enqueue_training_job(job.id)
    except QueueUnavailable as exc:
        await db.run(crud.fail_training_job, job.id, exc.code, exc.message)  # nothing left queued forever
        raise
    response.headers["Location"] = f"/v1/training-jobs/{job.id}"
    return job


@router.get("", response_model=list[TrainingJobPublic], responses=ERRORS, summary="Training jobs, newest first")
async def list_training_jobs(
    db: DatabaseDep, caller: TrainerDep,
    status: Annotated[TrainingJobStatusName | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[TrainingJobPublic]:
    return await db.run(crud.list_training_jobs, limit, status, caller)


@router.get("/{job_id}", response_model=TrainingJobPublic, responses=ERRORS,
            summary="A training job: status, stage, progress, ETA, log tail, metrics, candidate, gate decision")
async def read_training_job(job_id: str, db: DatabaseDep, caller: TrainerDep) -> TrainingJobPublic:
    return await db.run(crud.read_training_job, job_id, caller)


@router.post(
    "/{job_id}/cancel", response_model=TrainingJobPublic, responses=ERRORS, summary="Cancel a training job",
    description="A queued job is cancelled at once; a running one stops at its next check "
    "(`cancel_requested` is true until it has). 409 for a finished job.",
)
async def cancel_training_job(job_id: str, db: DatabaseDep, caller: TrainerDep) -> TrainingJobPublic:
    return await db.run(crud.cancel_training_job, job_id, caller)
