from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.gateway import crud
from services.gateway.api.deps import DatabaseDep, ModelStoreDep, SettingsDep
from shared.heartbeat import HEARTBEAT_TTL_S, STAGES, heartbeat_key

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def stage_checks(redis, namespace: str, now: float) -> dict[str, str]:  # noqa: ANN001 - redis.asyncio client
    """'ok (n workers)' or 'no live worker' per stage at unix time ``now``, from the workers'
    heartbeats (shared.heartbeat)."""
    pipe = redis.pipeline()
    for stage in STAGES:
        pipe.zcount(heartbeat_key(namespace, stage), now - HEARTBEAT_TTL_S, "+inf")
    counts = await pipe.execute()
    return {f"stage:{stage}": f"ok ({n} worker{'s' if n != 1 else ''})" if n else "no live worker"
            for stage, n in zip(STAGES, counts)}


@router.get("/readyz", summary="Readiness: Redis, the database, the active model and a live worker per stage")
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
