"""Browser sessions for the web page: a signed http-only cookie instead of an API key in the page
(the mechanism and its CSRF defence: ``services.gateway.sessions``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from services.gateway.api.deps import DatabaseDep, SettingsDep
from services.gateway.errors import CsrfFailed, RateLimited, SessionEnded, SessionsDisabled
from services.gateway.sessions import COOKIE, CSRF_HEADER, SessionSigner
from shared import api_keys
from shared.auth import Role
from shared.schemas import ErrorResponse, SessionPublic

router = APIRouter(prefix="/v1/session", tags=["session"])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 429)}
CsrfHeader = Annotated[str | None, Header(alias=CSRF_HEADER, max_length=128,
                                          description="Any value to start a session (its presence is what "
                                          "counts: a cross-site form cannot send a header).")]


def _new_browser_key(session, expires: int) -> str:  # noqa: ANN001
    """A client key row for one browser; its secret is never shown to anyone (only the cookie acts as it).
    The row records when the cookie expires: after that nobody can reach its wardrobe, so retention's clocks
    apply to it again (shared.retention)."""
    expires_at = datetime.fromtimestamp(expires, timezone.utc)
    return api_keys.create_key(session, "browser session", Role.client, expires_at=expires_at).row.id


def _public(signer: SessionSigner, key_id: str, cookie: str, created: bool) -> SessionPublic:
    return SessionPublic(client_id=key_id, csrf_token=signer.csrf_token(key_id), expires_at=signer.expires_at(cookie),
                         created=created)


async def _current(request: Request) -> tuple[str, str] | None:
    """(key id, cookie) of this request's live session, or None."""
    state = request.app.state
    cookie = request.cookies.get(COOKIE)
    key_id = state.sessions.verify(cookie)
    if key_id is None or await state.keys.resolve_id(state.database, key_id) is None:
        return None
    return key_id, cookie


@router.post(
    "", status_code=201, response_model=SessionPublic, responses={200: {"model": SessionPublic}, **ERRORS},
    summary="Start a browser session (the web page)",
    description="Sets an http-only, SameSite=Strict cookie that stands for a new client key of this browser; "
    f"answers its CSRF token. Needs the `{CSRF_HEADER}` header (any value). A browser with a live session gets "
    "that one back (200). New sessions per client address are rate-limited (SESSION_RATE_LIMIT_PER_MINUTE).",
)
async def start_session(request: Request, response: Response, db: DatabaseDep, settings: SettingsDep,
                        csrf: CsrfHeader = None) -> SessionPublic:
    if not settings.web_sessions:
        raise SessionsDisabled("browser sessions are turned off on this gateway (WEB_SESSIONS=false): use an API key")
    if not csrf:
        raise CsrfFailed(f"send the {CSRF_HEADER} header (any value) to start a session")
    state = request.app.state
    signer: SessionSigner = state.sessions
    current = await _current(request)
    if current is not None:
        response.status_code = 200
        return _public(signer, current[0], current[1], created=False)
    address = request.client.host if request.client else "unknown"
    retry_after = await state.rate_limiter.hit(f"new-session:{address}", settings.session_rate_limit_per_minute)
    if retry_after is not None:
        raise RateLimited(f"too many new sessions from {address}; retry in {retry_after} s", retry_after_s=retry_after)
    expires = signer.expiry()
    key_id = await db.run(_new_browser_key, expires)
    cookie = signer.issue(key_id, expires)
    response.set_cookie(COOKIE, cookie, max_age=signer.max_age_s, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return _public(signer, key_id, cookie, created=True)


@router.get("", response_model=SessionPublic, responses=ERRORS, summary="This browser's session and CSRF token")
async def read_session(request: Request) -> SessionPublic:
    current = await _current(request)
    if current is None:
        raise SessionEnded("no live browser session: start one with POST /v1/session")
    return _public(request.app.state.sessions, current[0], current[1], created=False)
