from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, ModelStoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis, the database and the active model are reachable")
async def readyz(request: Request, db: DatabaseDep, model_store: ModelStoreDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"unreachable: {exc}"
    try:
        checks.update(await db.run(crud.readiness, model_store))
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {exc}"
    ready = all(v.startswith("ok") for v in checks.values()) and {"redis", "database", "model"} <= set(checks)
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
