"""Builds the gateway app: ``uvicorn --factory services.gateway.main:create_app``."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.gateway.admission import Admission
from services.gateway.api.main import api_router
from services.gateway.config import GatewaySettings
from services.gateway.errors import install_error_handlers
from services.gateway.metrics import RequestMetrics
from services.gateway.openapi import install_openapi
from services.gateway.requestid import RequestId
from services.gateway.startup import lifespan
from services.gateway.web import install_web
from shared.log_levels import quiet_libraries
from shared.logs import configure_logging, install_task_context
from shared.photos import return_freed_bitmaps_to_the_os
from shared.tracing import configure_tracing, install_task_tracing


def create_app(settings: GatewaySettings | None = None, clock: Callable[[], float] = time.time) -> FastAPI:
    """``clock``: unix time for the heartbeat window of ``/readyz`` (injectable, so a test moves
    time instead of depending on how fast the machine is)."""
    settings = settings or GatewaySettings()
    return_freed_bitmaps_to_the_os()  # uploads are validated in a thread pool (shared.photos)
    configure_logging(settings.log_level, settings.log_format, service="gateway")
    quiet_libraries(settings.log_level)  # Alembic's lines when it migrates at start-up
    install_task_context()  # a task this process sends carries the request's id (shared/logs.py)
    if configure_tracing("gateway", settings.tracing_endpoint, settings.tracing_sample_ratio):  # off unless set
        install_task_tracing()
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
    install_openapi(app)  # bearer scheme, errors as sent (services/gateway/openapi.py)
    app.add_middleware(Admission, settings=settings)  # key, rate limit and body limits before any body is read
    app.add_middleware(RequestMetrics)  # outside admission: its 401s, 413s and 429s are counted too
    app.add_middleware(RequestId)  # outside the rest: every line of the request, and its tasks, carry the id
    if settings.cors_origins:  # browsers may call the API only from these origins (outermost: 401s and 413s too)
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Location", "Retry-After", "X-Request-ID"], max_age=600)
    return app
