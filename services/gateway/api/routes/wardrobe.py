"""A person's wardrobe: their garments (classifications with their verdicts), thumbnails, removal.
The rules (what removal deletes, what it keeps) live in ``shared.wardrobe``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from services.gateway import crud
from services.gateway.api.deps import (CallerDep, DatabaseDep, DecodeBudgetDep, JobsDep, SettingsDep, StoreDep,
                                       TaxonomyDep)
from services.gateway.errors import PhotoGone
from services.gateway.thumbnails import thumbnail
from shared.jobs import parse_job_id
from shared.schemas import ErrorResponse, WardrobePublic
from shared.storage import PhotoMissing

router = APIRouter(tags=["wardrobe"])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 429)}
JobId = Annotated[str, Path(max_length=64, description="The classification's id (a UUID).")]


@router.get("/v1/wardrobe", response_model=WardrobePublic, responses=ERRORS, summary="The caller's garments",
            description="The caller's own classifications, newest first, each with the caller's current verdict "
            "(confirmed or corrected) and the class that makes: what the web page's \"My wardrobe\" shows. A garment "
            "with the caller's verdict is not expired by the retention sweep while it stays here "
            "(RETENTION_KEEP_WARDROBE); one without loses its photo, then its row, on the usual clocks.")
async def read_wardrobe(caller: CallerDep, db: DatabaseDep, taxonomy: TaxonomyDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> WardrobePublic:
    return await db.run(crud.read_wardrobe, caller, taxonomy, limit)


@router.get("/v1/classifications/{job_id}/thumbnail", response_class=Response, summary="The photo, small",
            responses={200: {"content": {"image/jpeg": {}}, "description": "A JPEG, longest side 320 px."}, **ERRORS})
async def read_thumbnail(job_id: JobId, caller: CallerDep, db: DatabaseDep, store: StoreDep,
                         budget: DecodeBudgetDep, settings: SettingsDep) -> Response:
    key = await db.run(crud.photo_key_of, job_id, caller)  # 404 unless the caller's (or an operator)
    try:
        data = await run_in_threadpool(store.get, key)
    except PhotoMissing:
        raise PhotoGone(f"the photo of classification {job_id} is no longer stored") from None
    jpeg = await thumbnail(data, len(data), settings.max_photo_pixels, budget)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.delete("/v1/classifications/{job_id}", status_code=204, response_class=Response, responses=ERRORS,
               summary="Remove a garment",
               description="Deletes the classification, every verdict on it and its photo (unless another "
               "classification holds the same bytes). With `?keep_for_training=true` the photo and verdicts are "
               "kept for training instead, and the classification leaves the caller's wardrobe for good.")
async def remove_garment(job_id: JobId, caller: CallerDep, db: DatabaseDep, store: StoreDep, jobs: JobsDep,
                         keep_for_training: bool = False) -> Response:
    removal = await db.run(crud.remove_garment, job_id, caller, keep_for_training)  # committed on return
    jobs.cache.pop(parse_job_id(job_id))  # this gateway answers the read with 404 from now on
    if removal.photo_key_to_delete:
        await run_in_threadpool(store.delete, removal.photo_key_to_delete)
    return Response(status_code=204)
