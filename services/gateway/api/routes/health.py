from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, ModelStoreDep, SettingsDep
from services.gateway.liveness import live_counts

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="'ok ...' or the problem, per check: redis, database, model, "
                                   "stage:<name> (live workers; required only for the stages in READY_STAGES).",
                                   examples=[{"redis": "ok", "database": "ok", "model": "ok (2026-12-02-lite2)",
                                              "stage:inference": "ok (2 workers)", "stage:hedger": "no live worker"}])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def stage_checks(redis, namespace: str, now: float) -> dict[str, str]:  # noqa: ANN001 - redis.asyncio client
    """'ok (n workers)' or 'no live worker' per stage at unix time ``now``, from the workers'
    heartbeats (shared.heartbeat)."""
    counts = await live_counts(redis, namespace, now)
    return {f"stage:{stage}": f"ok ({n} worker{'s' if n != 1 else ''})" if n else "no live worker"
            for stage, n in counts.items()}


@router.get("/readyz", summary="Readiness: Redis, the database and the active model (each stage's workers reported; "
            "required only for the stages in READY_STAGES)",
            responses={200: {"model": Readiness, "description": "Ready: it can accept and answer."},
                       503: {"model": Readiness, "description": "Not ready: a required check failed (named)."}})
async def readyz(request: Request, db: DatabaseDep, model_store: ModelStoreDep, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, str] = {}
    redis = request.app.state.redis
    try:
        await redis.ping()
        checks["redis"] = "ok"
        checks.update(await stage_checks(redis, settings.redis_namespace, request.app.state.clock()))
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"unreachable: {exc}"
    try:
        checks.update(await db.run(crud.readiness, model_store))
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {exc}"
    required = {"redis", "database", "model", *(f"stage:{stage}" for stage in settings.ready_stages)}
    ready = required <= set(checks) and all(checks[name].startswith("ok") for name in required)
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
