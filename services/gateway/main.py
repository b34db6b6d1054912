"""Builds the gateway app: ``uvicorn --factory services.gateway.main:create_app``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.gateway.api.main import api_router
from services.gateway.config import GatewaySettings
from services.gateway.errors import error_body, install_error_handlers
from services.gateway.startup import lifespan
from services.gateway.web import install_web
from shared.log_levels import quiet_libraries
from shared.photos import return_freed_bitmaps_to_the_os


class BodySizeLimit:
    """Refuses a request body over ``max_bytes`` with 413, counting bytes as they arrive.

    A declared Content-Length over the limit is answered before anything is read; a chunked body
    (no Content-Length) is counted message by message and cut the moment it passes the limit,
    before the multipart parser has spooled it. (Starlette's own RequestBodyLimitMiddleware
    answers in plain text; this one keeps the JSON error shape by raising an HTTPException that
    FastAPI hands to the app's handler.)
    """

    def __init__(self, app, max_bytes: int) -> None:  # noqa: ANN001 - ASGI app
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            body = error_body("photo_too_large", f"the upload is {int(length)} bytes; the limit is "
                              f"{self.max_bytes} bytes")
            await JSONResponse(body, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted_receive():  # noqa: ANN202
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, f"the upload is over the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, counted_receive, send)


MULTIPART_OVERHEAD = 64 * 1024  # form boundaries, headers and the accuracy field around the photo


def create_app(settings: GatewaySettings | None = None, clock: Callable[[], float] = time.time) -> FastAPI:
    """``clock``: unix time for the heartbeat window of ``/readyz`` (injectable, so a test moves
    time instead of depending on how fast the machine is)."""
    settings = settings or GatewaySettings()
    return_freed_bitmaps_to_the_os()  # uploads are validated in a thread pool (shared.photos)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries(settings.log_level)  # Alembic's lines when it migrates at start-up
    app = FastAPI(
        title="Wardrobe",
        summary="Tells what garment is in a photo, as specific as it can be while staying right.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served by install_web from local files, not a CDN
    )
    app.state.settings = settings
    app.state.clock = clock
    install_error_handlers(app)
    app.include_router(api_router)
    install_web(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_photo_bytes + MULTIPART_OVERHEAD)
    if settings.cors_origins:  # browsers may call the API only from these origins (outermost: 413s too)
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Location", "Retry-After"],
                           max_age=600)
    return app
