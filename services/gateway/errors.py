"""The gateway's errors, each mapped to one status code, all answered as
``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.photos import CorruptImage, DecompressionBomb, EmptyPhoto, NotAnImage, PhotoError, PhotoTooLarge

log = logging.getLogger(__name__)


class GatewayError(Exception):
    status_code = 500
    code = "internal_error"

    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JobNotFound(GatewayError):
    status_code, code = 404, "job_not_found"


class Unauthenticated(GatewayError):
    status_code, code = 401, "unauthenticated"
    headers = {"WWW-Authenticate": "Bearer"}


class SessionEnded(Unauthenticated):
    """A browser session cookie that is forged, expired or whose key was revoked."""

    code = "session_ended"
    headers = None


class CsrfFailed(GatewayError):
    status_code, code = 403, "csrf_failed"


class SessionsDisabled(GatewayError):
    status_code, code = 403, "sessions_disabled"


class PhotoGone(GatewayError):
    status_code, code = 404, "photo_not_found"


class Forbidden(GatewayError):
    status_code, code = 403, "forbidden"


class RateLimited(GatewayError):
    status_code, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class KeyNotFound(GatewayError):
    status_code, code = 404, "key_not_found"


class InvalidParameter(GatewayError):
    status_code, code = 422, "invalid_request"


class ClassificationNotFinished(GatewayError):
    status_code, code = 409, "classification_not_finished"


class UnknownNode(GatewayError):
    status_code, code = 422, "unknown_node"


class PhotoExpired(GatewayError):
    """Keeping a classification whose photo the retention sweep already deleted."""

    status_code, code = 409, "photo_expired"


class TrainingJobNotFound(GatewayError):
    status_code, code = 404, "training_job_not_found"


class TrainingJobFinished(GatewayError):
    status_code, code = 409, "training_job_finished"


class ModelNotFound(GatewayError):
    status_code, code = 404, "model_not_found"


class ModelUnavailable(GatewayError):
    """Registered, but its files are not in the model store: workers could not load it."""

    status_code, code = 409, "model_unavailable"


class NothingToRollBack(GatewayError):
    status_code, code = 409, "nothing_to_roll_back"


class NoActiveModel(GatewayError):
    status_code, code = 503, "no_active_model"


class QueueUnavailable(GatewayError):
    status_code, code = 503, "queue_unavailable"


class NoLiveWorker(GatewayError):
    """REFUSE_WITHOUT_WORKERS is set and a stage of the pipeline has no live worker."""

    status_code, code = 503, "no_live_worker"
    headers = {"Retry-After": "10"}


class RehedgeFailed(GatewayError):
    """The stored job cannot be re-hedged (its model version or calibration is gone or unusable)."""

    status_code, code = 500, "rehedge_failed"


# Photo problems found while validating an upload (shared.photos), one status each.
PHOTO_ERROR_STATUS: dict[type[PhotoError], int] = {
    EmptyPhoto: 400,
    CorruptImage: 400,
    NotAnImage: 415,
    PhotoTooLarge: 413,
    DecompressionBomb: 413,
    PhotoError: 400,
}


def error_body(code: str, message: str, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _describe(err: dict) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    where, name = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("request", ".".join(loc))
    if where == "body" and err.get("type") == "missing":
        return (f"missing form field '{name}': send the photo as multipart/form-data in a file field "
                f"named '{name}'")
    kind = {"body": "form field", "query": "query parameter", "path": "path parameter"}.get(where, where)
    return f"{kind} '{name}': {err.get('msg', 'invalid')}"


def database_unavailable(exc: OperationalError, **headers: str) -> JSONResponse:
    """The database refused or dropped the connection: a retryable 503, not a 500."""
    log.warning("database unavailable: %s", str(exc).splitlines()[0])
    return JSONResponse(error_body("database_unavailable", "the database is unavailable; retry shortly"),
                        status_code=503, headers={"Retry-After": "1", **headers})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OperationalError)
    async def _database_unavailable(_: Request, exc: OperationalError) -> JSONResponse:
        return database_unavailable(exc)

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(PhotoError)
    async def _photo_error(_: Request, exc: PhotoError) -> JSONResponse:
        status = next(s for cls, s in PHOTO_ERROR_STATUS.items() if isinstance(exc, cls))
        return JSONResponse(error_body(exc.code, str(exc)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(_describe(e) for e in errors) or "invalid request"
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse(error_body("invalid_request", message, details=details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed",
                                               413: "photo_too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)
