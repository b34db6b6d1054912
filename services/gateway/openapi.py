"""The OpenAPI document as the app behaves: a bearer security scheme (the Authorize button of
``/docs``) on every route that needs a key, and each error response in the shape the app sends,
``{"error": {"code", "message"}}`` (``services.gateway.errors``), FastAPI's default 422 shape included.

Derived from the routes' dependencies rather than listed by hand: a route that depends on the
caller (``CallerDep``) gets the scheme, 401 and 429; one behind ``require_role`` also 403; every
``/v1`` route 503 (the database or the queue unavailable).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from services.gateway.api.deps import get_caller

__all__ = ["install_openapi", "SCHEME"]

SCHEME = "bearer"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
DESCRIPTIONS = {
    401: ("No API key, or an unknown or revoked one.", "unauthenticated", "the API key is unknown or revoked"),
    403: ("The key's role may not do this.", "forbidden", "this needs the operator role; the key's role is client"),
    422: ("A parameter or the body is invalid; the message names it.", "invalid_request",
          "query parameter 'accuracy': Input should be a valid number"),
    429: ("Over the key's rate limit; retry after Retry-After seconds.", "rate_limited",
          "key k1 is over its limit of 600 requests per minute; retry in 12 s"),
    503: ("The database, the job queue or the model is unavailable; retry.", "database_unavailable",
          "the database is unavailable; retry shortly"),
}


# Request examples, by (method, path): what a client sends (the 2xx bodies are documented by their models).
REQUEST_EXAMPLES: dict[tuple[str, str], dict[str, dict]] = {
    ("post", "/v1/classifications/{classification_id}/feedback"): {
        "right": {"summary": "The answer was right", "value": {"correct": True}},
        "truth": {"summary": "The truth is this node (an inner one means 'at least this')",
                  "value": {"node": "body.top.t-shirt"}},
    },
    ("post", "/v1/training-jobs"): {
        "quick": {"summary": "Refit the head on cached features", "value": {"mode": "quick"}},
        "full": {"summary": "A full retrain, promoted only if the gate passes",
                 "value": {"mode": "full", "promote": "gate", "tolerance": 0.01}},
    },
    ("put", "/v1/classifications/{job_id}/keep"): {
        "keep": {"summary": "Keep it past retention", "value": {"keep": True}},
    },
}


def _api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """(full path, route) of every API route. FastAPI 0.16x mounts included routers lazily
    (``_IncludedRouter``, whose ``effective_route_contexts`` carry the prefixed paths); plain
    ``APIRoute``s are taken as they are."""
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            out.append((route.path_format, route))
        elif hasattr(route, "effective_route_contexts"):
            for ctx in route.effective_route_contexts():
                if isinstance(ctx.original_route, APIRoute):
                    out.append((ctx.path or ctx.original_route.path_format, ctx.original_route))
    return out


def _dependency_calls(route: APIRoute) -> set[Any]:
    calls, stack = set(), list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        calls.add(dep.call)
        stack.extend(dep.dependencies)
    return calls


def _error(status: int) -> dict:
    description, code, message = DESCRIPTIONS[status]
    out = {"description": description,
           "content": {"application/json": {"schema": ERROR_REF,
                                            "example": {"error": {"code": code, "message": message}}}}}
    if status in (429, 503):
        out["headers"] = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                          "schema": {"type": "integer"}}}
    return out


def build(app: FastAPI) -> dict:
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes,
                         description=app.description)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <key>` (`wardrobe keys create`; SECURITY.md). The web "
        "page calls the same routes with its browser session cookie instead (POST /v1/session).",
    }
    for path, route in _api_routes(app):
        calls = _dependency_calls(route)
        needs_key = get_caller in calls
        needs_role = any(getattr(c, "__qualname__", "").startswith("require_role") for c in calls)
        for method in route.methods:
            op = schema["paths"].get(path, {}).get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error(422)
            if needs_key:
                op["security"] = [{SCHEME: []}]
                for status in (401, 429):
                    responses[str(status)] = _error(status)
            if needs_role:
                responses["403"] = _error(403)
            if path.startswith("/v1"):
                responses["503"] = _error(503)
    for (method, path), examples in REQUEST_EXAMPLES.items():
        op = schema["paths"].get(path, {}).get(method)
        if op and "requestBody" in op:
            op["requestBody"]["content"]["application/json"]["examples"] = examples
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # the app never answers these shapes
        schemas.pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
