from fastapi import APIRouter

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, OperatorDep
from shared.schemas import ModelVersionPublic

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[ModelVersionPublic], summary="Registered model versions, newest first")
async def read_models(db: DatabaseDep, _: OperatorDep) -> list[ModelVersionPublic]:
    return await db.run(crud.list_models)
