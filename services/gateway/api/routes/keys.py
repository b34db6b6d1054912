"""API keys (operators): create one (its secret shown once), list them, revoke one.

The same operations as ``wardrobe keys`` straight on the database, for an operator who holds a
key but not the database (a deployment's gateway is all it can reach).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, OperatorDep
from shared.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ErrorResponse

router = APIRouter(prefix="/v1/keys", tags=["keys"])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}


@router.post("", status_code=201, response_model=ApiKeyCreated, responses=ERRORS,
             summary="Create a key; the answer holds its secret, shown this once")
async def create_key(body: ApiKeyCreate, db: DatabaseDep, caller: OperatorDep) -> ApiKeyCreated:
    return await db.run(crud.create_key, body)


@router.get("", response_model=list[ApiKeyPublic], responses=ERRORS, summary="Keys, oldest first (never their secrets)")
async def read_keys(db: DatabaseDep, caller: OperatorDep,
                    include_revoked: Annotated[bool, Query(description="Revoked keys too.")] = False
                    ) -> list[ApiKeyPublic]:
    return await db.run(crud.list_keys, include_revoked)


@router.delete("/{key_id}", response_model=ApiKeyPublic, responses=ERRORS,
               summary="Revoke a key (idempotent): refused here at once, by other gateways within AUTH_CACHE_S")
async def revoke_key(key_id: str, request: Request, db: DatabaseDep, caller: OperatorDep) -> ApiKeyPublic:
    key = await db.run(crud.revoke_key, key_id)
    request.app.state.keys.forget(key_id)
    return key
