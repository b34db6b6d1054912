"""Builds the gateway app: ``uvicorn --factory services.gateway.main:create_app``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.gateway.admission import Admission
from services.gateway.api.main import api_router
from services.gateway.config import GatewaySettings
from services.gateway.errors import install_error_handlers
from services.gateway.startup import lifespan
from services.gateway.web import install_web
from shared.log_levels import quiet_libraries
from shared.photos import return_freed_bitmaps_to_the_os


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
    app.add_middleware(Admission, settings=settings)  # key, rate limit and body limits before any body is read
    if settings.cors_origins:  # browsers may call the API only from these origins (outermost: 401s and 413s too)
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Location", "Retry-After"],
                           max_age=600)
    return app
