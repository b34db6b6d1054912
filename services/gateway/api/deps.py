"""Dependencies of the routes, as named ``Annotated`` aliases.

Every dependency is ``async def``, even those that only read ``app.state``: FastAPI runs a plain
``def`` dependency in the thread pool, and those hand-offs (five on a re-hedge) cost more of the
gateway's CPU than the request's own work once the database is out of its way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from services.gateway.config import GatewaySettings
from services.gateway.database import Database
from services.gateway.errors import CsrfFailed, Forbidden, RateLimited, SessionEnded, Unauthenticated
from services.gateway.jobcache import JobCache
from services.gateway.metrics import AUTH_REFUSALS
from services.gateway.notifier import Notifier
from services.gateway.queue import JobQueue
from services.gateway.rehedge import Rehedger
from services.gateway.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS
from shared.auth import Caller, Role
from shared.model_store import ModelStore
from shared.photos import AsyncDecodeBudget
from shared.storage import PhotoStore
from shared.taxonomy import Taxonomy


async def get_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


async def get_rehedger(request: Request) -> Rehedger:
    return request.app.state.rehedger


async def get_jobs(request: Request) -> JobCache:
    return request.app.state.jobs


async def get_notifier(request: Request) -> Notifier:
    return request.app.state.notifier


async def get_store(request: Request) -> PhotoStore:
    return request.app.state.store


async def get_decode_budget(request: Request) -> AsyncDecodeBudget:
    return request.app.state.decode_budget


async def get_model_store(request: Request) -> ModelStore:
    return request.app.state.model_store


async def get_taxonomy(request: Request) -> Taxonomy:
    return request.app.state.taxonomy


MAX_KEY_CHARS = 512  # a key is ~60 characters (wdr_<id>_<secret>)


async def authenticate(request: Request, authorization: str | None) -> Caller:
    """The caller of a request, from ``Authorization: Bearer <API key>`` or, for the web page, its
    session cookie (``services.gateway.sessions``), counted against its rate limit:
    ``Unauthenticated`` (401) without a valid key, ``RateLimited`` (429, Retry-After) once the key is
    over its limit. The key is resolved at most AUTH_CACHE_S seconds ago (``services.gateway.keycache``).
    Called once per request, by ``services.gateway.admission`` on the headers alone (``request``
    carries no body there), before any body is read."""
    state = request.app.state
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if authorization is None and COOKIE in request.cookies and state.settings.web_sessions:  # the web page
        caller = await _session_caller(request)
    elif scheme.lower() != "bearer" or not token:
        AUTH_REFUSALS.labels(reason="no_key").inc()
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    elif len(token) > MAX_KEY_CHARS:  # no key is this long: not worth hashing or a database look-up
        AUTH_REFUSALS.labels(reason="unknown_key").inc()
        raise Unauthenticated("the API key is unknown or revoked")
    else:
        caller = await state.keys.resolve(state.database, token)
        if caller is None:
            AUTH_REFUSALS.labels(reason="unknown_key").inc()
            raise Unauthenticated("the API key is unknown or revoked")
    settings = state.settings
    limit = settings.rate_limit_per_minute if caller.rate_limit_per_minute is None else caller.rate_limit_per_minute
    retry_after = await state.rate_limiter.hit(caller.id, limit)
    if retry_after is not None:
        AUTH_REFUSALS.labels(reason="rate_limited").inc()
        raise RateLimited(f"key {caller.id} is over its limit of {limit} requests per minute; "
                          f"retry in {retry_after} s", retry_after_s=retry_after)
    return caller


async def get_caller(
    request: Request,
    authorization: Annotated[str | None, Header(description="`Bearer <API key>`", max_length=MAX_KEY_CHARS)] = None,
) -> Caller:
    """The caller of this request, as the admission middleware resolved it before the body was
    read (``services.gateway.admission``); resolved here only where no middleware ran (an app
    built without it). Every counted request goes through here, re-hedges included."""
    caller = getattr(request.state, "caller", None)
    if caller is None:
        caller = await authenticate(request, authorization)
        request.state.caller = caller  # for the access log
    return caller


async def require_live_pipeline(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> None:
    """With REFUSE_WITHOUT_WORKERS, an upload is a 503 while inference or hedging has no live worker
    (``services.gateway.liveness``); after the key check, so only a caller learns it."""
    settings = request.app.state.settings
    if settings.refuse_without_workers:
        from services.gateway.liveness import require_pipeline

        await require_pipeline(request.app.state.redis, settings.redis_namespace, request.app.state.clock())


async def _session_caller(request: Request) -> Caller:
    """The caller of a browser session cookie (``services.gateway.sessions``): 401 when the cookie
    is forged, expired or its key revoked (the page starts a new session), 403 when a
    state-changing request lacks the session's CSRF token."""
    state = request.app.state
    key_id = state.sessions.verify(request.cookies.get(COOKIE))
    caller = await state.keys.resolve_id(state.database, key_id) if key_id else None
    if caller is None:
        AUTH_REFUSALS.labels(reason="unknown_session").inc()
        raise SessionEnded("this browser session has ended (expired, revoked or signed with another secret); "
                           "start a new one with POST /v1/session")
    if request.method not in SAFE_METHODS and not state.sessions.csrf_ok(key_id, request.headers.get(CSRF_HEADER)):
        AUTH_REFUSALS.labels(reason="csrf").inc()
        raise CsrfFailed(f"a state-changing request with a session cookie needs the session's {CSRF_HEADER} "
                         "header (GET /v1/session gives it)")
    return caller


def require_role(role: Role) -> Callable[..., Caller]:
    """A dependency that admits callers whose role allows ``role`` (403 otherwise)."""

    async def _check(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if not caller.may(role):
            AUTH_REFUSALS.labels(reason="forbidden").inc()
            raise Forbidden(f"this needs the {role.value} role; the key's role is {caller.role.value}")
        return caller

    return _check


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
LivePipelineDep = Annotated[None, Depends(require_live_pipeline)]
RehedgerDep = Annotated[Rehedger, Depends(get_rehedger)]
JobsDep = Annotated[JobCache, Depends(get_jobs)]
NotifierDep = Annotated[Notifier, Depends(get_notifier)]
StoreDep = Annotated[PhotoStore, Depends(get_store)]
DecodeBudgetDep = Annotated[AsyncDecodeBudget, Depends(get_decode_budget)]
TaxonomyDep = Annotated[Taxonomy, Depends(get_taxonomy)]
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
CallerDep = Annotated[Caller, Depends(get_caller)]
TrainerDep = Annotated[Caller, Depends(require_role(Role.trainer))]
OperatorDep = Annotated[Caller, Depends(require_role(Role.operator))]
