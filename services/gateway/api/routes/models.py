from fastapi import APIRouter

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep
from shared.schemas import ModelVersionPublic

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[ModelVersionPublic], summary="Registered model versions, newest first")
async def read_models(db: DatabaseDep) -> list[ModelVersionPublic]:
    return await db.run(crud.list_models)
