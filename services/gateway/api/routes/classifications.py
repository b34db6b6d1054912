"""Classification jobs: validate, store, enqueue, answer. No inference or hedging here."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import AsyncExitStack
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from services.gateway import crud
from services.gateway.api.deps import (CallerDep, DatabaseDep, DecodeBudgetDep, JobsDep, LivePipelineDep,
                                       NotifierDep, QueueDep, RehedgerDep, SettingsDep, StoreDep)
from services.gateway.config import GatewaySettings
from services.gateway.errors import InvalidParameter, JobNotFound, NoActiveModel, QueueUnavailable
from services.gateway.jobcache import JobView
from services.gateway.metrics import ACCEPT_SECONDS, CLASSIFICATIONS, REHEDGES
from services.gateway.notifier import Notifier, wait_event
from shared.hedging.calibration import MAX_TARGET, MIN_TARGET
from shared.photos import AsyncDecodeBudget, PhotoError, PhotoTooLarge, finish_decode, open_photo
from shared.schemas import ClassificationPublic, ErrorResponse, KeepPublic, KeepUpdate
from shared.storage import PhotoStore
from shared.tables import ClassificationJob

router = APIRouter(prefix="/v1/classifications", tags=["classifications"])

log = logging.getLogger(__name__)
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 429, 500, 503)}
AccuracyParam = "Accuracy target in [0.5, 0.999]: the hedged answer is right at least this often."
VALIDATION_SIDE = 64  # the gateway only validates: the smallest decode that reads every byte
# Bounds declared in the schema (clients and schemathesis see them) but checked by _accuracy/_wait,
# which name the problem in words; MAX_WAIT_S may lower the wait bound further.
ACCURACY_BOUNDS = {"minimum": MIN_TARGET, "maximum": MAX_TARGET}
WAIT_BOUNDS = {"minimum": 0, "maximum": 30}
WaitParam = "Wait up to this many seconds (at most 30) for the result before answering."


def _accuracy(value: float | None, settings: GatewaySettings) -> float:
    if value is None:
        return settings.default_accuracy
    if not math.isfinite(value) or not MIN_TARGET <= value <= MAX_TARGET:
        raise InvalidParameter(f"accuracy must be between {MIN_TARGET} and {MAX_TARGET}, got {value}")
    return value


def _wait(value: float, settings: GatewaySettings) -> float:
    if not math.isfinite(value) or not 0 <= value <= settings.max_wait_s:
        raise InvalidParameter(f"wait must be between 0 and {settings.max_wait_s:g} seconds, got {value}")
    return value


async def _validate_and_store(data: bytes, settings: GatewaySettings, store: PhotoStore,
                              budget: AsyncDecodeBudget) -> str:
    """Decode (bad input never becomes a job), then store by content hash. Decoded small: every
    byte is still decoded, so truncation is caught, but JPEGs at a reduced DCT scale and other
    formats within the process's decode budget (shared.photos). The header is read and checked
    in a thread (milliseconds); the wait for the budget is on the event loop, so uploads waiting
    their turn hold no thread that other requests' database calls need; the decode is a thread's."""
    opened = await run_in_threadpool(open_photo, data, settings.max_photo_bytes, settings.max_photo_pixels,
                                     VALIDATION_SIDE, budget.capacity)
    async with budget.hold(opened.cost):
        await run_in_threadpool(finish_decode, opened)
    return await run_in_threadpool(store.put, data)


def _create_job(session, photo_key: str, accuracy: float, owner_id: str) -> ClassificationJob:  # noqa: ANN001
    if crud.active_model(session) is None:
        raise NoActiveModel("no model version is active; register one first")
    return crud.create_job(session, photo_key, accuracy, owner_id)


async def wait_for_job(job_id: str, wait_s: float, db: DatabaseDep, notifier: Notifier,
                       poll_s: float) -> ClassificationJob | None:
    """The job once finished, or as it is after ``wait_s`` seconds (callers check ownership first)."""
    deadline = time.monotonic() + wait_s
    async with notifier.watch(job_id) as event:  # watch first: no completion can slip by
        return await _wait_watched(job_id, await db.run(crud.read_job, job_id), deadline, event, db, poll_s)


async def _wait_watched(job_id: str, job: ClassificationJob | None, deadline: float, event: asyncio.Event,
                        db: DatabaseDep, poll_s: float) -> ClassificationJob | None:
    """``job`` (read after ``event`` began watching it) once finished, or as it is at ``deadline``."""
    while True:
        remaining = deadline - time.monotonic()
        if job is None or job.status.finished or remaining <= 0:
            return job
        await wait_event(event, min(remaining, poll_s))
        job = await db.run(crud.read_job, job_id)


@router.post(
    "", status_code=202, response_model=ClassificationPublic, responses={200: {"model": ClassificationPublic}, **ERRORS},
    summary="Classify a photo",
    description="Send the photo as multipart/form-data field `photo`. Answers 202 with the job "
    "(and a Location header) at once, or with `?wait=N` 200 with the result if it is ready within N s.",
)
async def create_classification(
    response: Response,
    photo: Annotated[UploadFile, File(description="The photo (JPEG, PNG, WebP, ...).")],
    caller: CallerDep,
    _live: LivePipelineDep,
    db: DatabaseDep,
    queue: QueueDep,
    notifier: NotifierDep,
    store: StoreDep,
    budget: DecodeBudgetDep,
    settings: SettingsDep,
    accuracy_form: Annotated[float | None, Form(alias="accuracy", description=AccuracyParam, json_schema_extra=ACCURACY_BOUNDS)] = None,
    accuracy_query: Annotated[float | None, Query(alias="accuracy", description=AccuracyParam, json_schema_extra=ACCURACY_BOUNDS)] = None,
    wait: Annotated[float, Query(description=WaitParam, json_schema_extra=WAIT_BOUNDS)] = 0.0,
) -> ClassificationPublic:
    t0 = time.perf_counter()
    accuracy = _accuracy(accuracy_form if accuracy_form is not None else accuracy_query, settings)
    wait = _wait(wait, settings)
    max_bytes = min(settings.max_photo_bytes, caller.max_photo_bytes or settings.max_photo_bytes)
    try:
        data = await photo.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PhotoTooLarge(f"the photo is over this key's limit of {max_bytes} bytes")
        photo_key = await _validate_and_store(data, settings, store, budget)
    except PhotoError as exc:
        CLASSIFICATIONS.labels(outcome=f"rejected_{exc.code}").inc()
        raise
    job = await db.run(_create_job, photo_key, accuracy, caller.id)  # committed before enqueueing
    job_id = str(job.id)
    async with AsyncExitStack() as stack:
        # With ?wait=, watch the job before it is enqueued: no completion can slip by, and the
        # row just committed (pending, nobody has it yet) is its state then, so the wait needs
        # no first read of it from the database.
        event = await stack.enter_async_context(notifier.watch(job_id)) if wait > 0 else None
        try:
            await queue.enqueue_classification(job_id)
        except QueueUnavailable as exc:
            await db.run(crud.fail_job, job_id, exc.code, exc.message)  # nothing left pending
            CLASSIFICATIONS.labels(outcome="queue_unavailable").inc()
            raise
        CLASSIFICATIONS.labels(outcome="accepted").inc()
        log.info("classification %s accepted", job_id, extra={"job_id": job_id})  # the workers log it too
        ACCEPT_SECONDS.observe(time.perf_counter() - t0)
        response.headers["Location"] = f"/v1/classifications/{job_id}"
        if event is not None:
            deadline = time.monotonic() + wait
            job = await _wait_watched(job_id, job, deadline, event, db, settings.wait_fallback_poll_s) or job
            if job.status.finished:
                response.status_code = 200
    return crud.to_public(job)


@router.get(
    "/{job_id}", response_model=ClassificationPublic, responses=ERRORS, summary="A classification job",
    description="Status and result. `?wait=N` waits up to N s for the result; `?accuracy=0.99` re-hedges "
    "the stored leaf probabilities for another target without running the network again.",
)
async def read_classification(
    job_id: Annotated[str, Path(max_length=64, description="The job id (a UUID).")],
    caller: CallerDep,
    db: DatabaseDep,
    jobs: JobsDep,
    rehedger: RehedgerDep,
    notifier: NotifierDep,
    settings: SettingsDep,
    accuracy: Annotated[float | None, Query(description=AccuracyParam, json_schema_extra=ACCURACY_BOUNDS)] = None,
    wait: Annotated[float, Query(description=WaitParam, json_schema_extra=WAIT_BOUNDS)] = 0.0,
) -> ClassificationPublic:
    target = _accuracy(accuracy, settings) if accuracy is not None else None
    wait = _wait(wait, settings)
    job = await jobs.read(db, job_id)  # a finished job from memory after its first read (jobcache)
    if job is None or not caller.owns(job.owner_id):  # another client's job is as absent as none
        raise JobNotFound(f"no classification job with id {job_id!r}")
    if wait > 0 and not job.finished:
        row = await wait_for_job(job_id, wait, db, notifier, settings.wait_fallback_poll_s)
        if row is not None:
            job = JobView.of(row)
            jobs.remember(row.id, job)
    if target is None or not job.rehedgeable:
        return job.public
    try:
        answer = await rehedger.rehedge(job, target)
    except Exception:
        REHEDGES.labels(outcome="error").inc()
        raise
    REHEDGES.labels(outcome="ok").inc()
    return job.rehedged(answer, target)


@router.put(
    "/{job_id}/keep", response_model=KeepPublic, responses={c: {"model": ErrorResponse} for c in (401, 404, 409, 422)},
    summary="Keep a classification past retention (or let it expire again)",
    description="`{\"keep\": true}`: this classification, its photo and its feedback are never deleted by the "
    "retention sweep (deleting the key's data still deletes them). 409 once its photo has already expired. "
    "`false`: the usual retention, under which a garment its owner confirmed or corrected stays while it is in "
    "their wardrobe (RETENTION_KEEP_WARDROBE).",
)
async def keep_classification(
    job_id: Annotated[str, Path(max_length=64, description="The job id (a UUID).")],
    body: KeepUpdate,
    caller: CallerDep,
    db: DatabaseDep,
) -> KeepPublic:
    return await db.run(crud.set_keep, job_id, caller, body.keep)
