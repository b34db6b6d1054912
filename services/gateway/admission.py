"""Admission: who is calling, and how much body they may send, decided before any body is read.

FastAPI reads and parses a request body before the route's dependencies run, so a key checked
in a dependency comes too late: a 15 MB JSON body sent *without a key* was read and parsed
(gateway 122 → 511 MB, issue [G2]). This pure ASGI middleware runs first, on the headers alone:

1. ``/v1/...`` and ``/metrics`` need a key or the web page's session cookie (all but
   ``POST``/``GET /v1/session``, which start and read one): the caller is resolved (``KeyResolver``'s
   cache; a session's CSRF token checked) and counted against its rate limit here, answering 401 / 429 before the body is touched. The
   route's ``CallerDep`` then reads the caller this left in the request's state.
2. A body has a limit by route: the upload route its photo limit (the key's own, if stricter) plus
   the multipart overhead, every other route ``MAX_JSON_BODY_BYTES``. A declared Content-Length
   over it is answered 413 at once; a chunked body is counted as it streams and cut when it
   passes the limit.
3. A body that stops arriving is answered 408 after ``BODY_TIMEOUT_S`` without a byte (a body
   shorter than its Content-Length used to hold its connection forever).

Every early answer carries ``Connection: close``: the unread rest of the body is never read.
(Slow or oversized *headers* are refused one layer down, in ``services.gateway.http``.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from services.gateway.config import GatewaySettings
from services.gateway.errors import GatewayError, database_unavailable, error_body

__all__ = ["Admission", "BodyRefused", "MULTIPART_OVERHEAD", "UPLOAD_PATH", "needs_key"]

MULTIPART_OVERHEAD = 64 * 1024  # form boundaries, headers and the accuracy field around the photo
UPLOAD_PATH = "/v1/classifications"  # the one route whose body is a photo
_CLOSE = {"Connection": "close"}


KEYLESS = ("/v1/session",)  # starts the web page's session: checks its own CSRF header and per-address limit


def needs_key(path: str) -> bool:
    """Every API route and the metrics need a key (or the web page's session cookie); health
    probes, the docs, the page and the route that starts a session do not."""
    return (path == "/v1" or path.startswith("/v1/") or path == "/metrics") and path not in KEYLESS


class BodyRefused(StarletteHTTPException):
    """Raised from ``receive`` while a route reads its body; FastAPI hands it to the app's handler
    (``errors.install_error_handlers``), which answers with ``code`` and closes the connection."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(status_code, message, headers=dict(_CLOSE))
        self.code = code


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class Admission:
    def __init__(self, app, settings: GatewaySettings) -> None:  # noqa: ANN001 - ASGI app
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = _header(scope, b"content-length") not in (None, b"0") or _header(scope, b"transfer-encoding")
        caller = None
        if needs_key(scope["path"]):
            from services.gateway.api.deps import authenticate

            authorization = _header(scope, b"authorization")
            try:  # a Request on the headers alone: it has no receive, so nothing can read the body
                caller = await authenticate(Request(scope), authorization.decode("latin-1") if authorization else None)
            except GatewayError as exc:
                headers = {**(exc.headers or {}), **(_CLOSE if has_body else {})}
                await JSONResponse(error_body(exc.code, exc.message), exc.status_code, headers)(scope, receive, send)
                return
            except OperationalError as exc:  # the key's look-up: outside the app's exception handlers here
                await database_unavailable(exc, **(_CLOSE if has_body else {}))(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        if not has_body:
            await self.app(scope, receive, send)
            return
        s = self.settings
        if scope["path"] == UPLOAD_PATH:
            photo_limit = min(s.max_photo_bytes, (caller.max_photo_bytes if caller else None) or s.max_photo_bytes)
            limit, code, what = photo_limit + MULTIPART_OVERHEAD, "photo_too_large", "upload"
        else:
            limit, code, what = s.max_json_body_bytes, "body_too_large", "request body"
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            body = error_body(code, f"the {what} is {int(length)} bytes; the limit is {limit} bytes")
            await JSONResponse(body, 413, _CLOSE)(scope, receive, send)
            return
        await self.app(scope, self._bounded_receive(receive, limit, code, what), send)

    def _bounded_receive(self, receive, limit: int, code: str, what: str):  # noqa: ANN001, ANN202
        received, timeout, complete = 0, self.settings.body_timeout_s, False

        async def bounded_receive() -> dict[str, Any]:
            nonlocal received, complete
            if complete:  # the body is in: what is left to hear is a disconnect, however late
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise BodyRefused(408, "body_timeout", f"no byte of the {what} arrived for {timeout:g} s; "
                                  "the connection is closed") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyRefused(413, code, f"the {what} is over the limit of {limit} bytes")
                complete = not message.get("more_body", False)
            return message

        return bounded_receive
