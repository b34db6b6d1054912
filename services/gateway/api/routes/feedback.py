"""Feedback on a classification: validate, store, answer. The verdict logic is shared.feedback."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway import crud
from services.gateway.api.deps import CallerDep, DatabaseDep, TaxonomyDep
from shared.schemas import ErrorResponse, FeedbackCreate, FeedbackListPublic, FeedbackPublic

router = APIRouter(prefix="/v1/classifications", tags=["feedback"])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 409, 422)}


@router.post(
    "/{classification_id}/feedback", status_code=201, response_model=FeedbackPublic, responses=ERRORS,
    summary="Say whether a classification was right",
    description='`{"correct": true}` confirms the answer; `{"node": "<dotted name>"}` names the right taxonomy '
    "node (an inner node means \"at least this\"). The caller's latest verdict is current; earlier ones stay in "
    "the history. 404 unknown classification (or another client's), 409 not finished yet, 422 unknown node.",
)
async def create_feedback(classification_id: str, body: FeedbackCreate, db: DatabaseDep, taxonomy: TaxonomyDep,
                          caller: CallerDep) -> FeedbackPublic:
    return await db.run(crud.give_feedback, classification_id, caller, body, taxonomy)


@router.get(
    "/{classification_id}/feedback", response_model=FeedbackListPublic, responses=ERRORS,
    summary="Feedback on a classification: the current verdict per caller and the whole history",
)
async def read_feedback(classification_id: str, db: DatabaseDep, caller: CallerDep) -> FeedbackListPublic:
    return await db.run(crud.read_feedback, classification_id, caller)
