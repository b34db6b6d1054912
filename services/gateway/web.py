"""The web page at ``/`` and the API docs at ``/docs``, both served from files in this process:
nothing is loaded from a CDN, so both work on a machine without internet.

The page is plain HTML, CSS and JavaScript under ``services/gateway/web/`` (no build step). The
docs use FastAPI's own Swagger UI and ReDoc pages pointed at the assets the pinned
``fastapi-offline`` package ships (Swagger UI 5, which renders OpenAPI 3.1; the assets only, not
its app class).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_web", "WEB_DIR", "VENDOR_DIR"]

WEB_DIR = Path(__file__).resolve().parent / "web"
VENDOR_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
# the page may run only its own scripts and talk only to this origin (no inline script, no CDN)
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def install_web(app: FastAPI) -> None:
    """``/`` (the page), ``/web/...`` (its files), ``/docs`` with local assets.
    Call with ``FastAPI(docs_url=None, redoc_url=None)``: these replace the CDN-backed defaults."""
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    app.mount("/docs-assets", StaticFiles(directory=VENDOR_DIR), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                             "X-Content-Type-Options": "nosniff",
                                                             "Referrer-Policy": "no-referrer"})

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io
