"""Model versions (operators): list them, activate one or roll back (operators). Inference workers
follow the active row, so a switch needs no restart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, ModelStoreDep, OperatorDep
from shared.schemas import ErrorResponse, ModelActivationPublic, ModelVersionPublic

router = APIRouter(prefix="/v1/models", tags=["models"])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409)}


@router.get("", response_model=list[ModelVersionPublic], summary="Registered model versions, newest first")
async def read_models(db: DatabaseDep, caller: OperatorDep) -> list[ModelVersionPublic]:
    return await db.run(crud.list_models)


@router.get("/history", response_model=list[ModelActivationPublic],
            summary="Changes of the active version, newest first (what a rollback reads)")
async def read_history(db: DatabaseDep, caller: OperatorDep,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ModelActivationPublic]:
    return await db.run(crud.model_history, limit)


@router.post("/rollback", response_model=ModelVersionPublic, responses=ERRORS,
             summary="Activate the version that was active before the current one")
async def rollback(db: DatabaseDep, store: ModelStoreDep, caller: OperatorDep) -> ModelVersionPublic:
    return await db.run(crud.rollback_model, store, caller.id)


@router.post("/{version}/activate", response_model=ModelVersionPublic, responses=ERRORS,
             summary="Make a registered version the active one (404 if unknown)")
async def activate(version: str, db: DatabaseDep, store: ModelStoreDep, caller: OperatorDep) -> ModelVersionPublic:
    return await db.run(crud.activate_model, version, store, caller.id)
