"""Every request gets an id: the client's ``X-Request-ID`` if it is a short token, else a new one. It
is answered back in the same header, set in ``shared.logs.REQUEST_ID`` for the request's log lines,
and carried by the tasks the request sends (``shared.logs.install_task_context``), so the gateway's
line and the workers' lines of one upload share it. With tracing on it is also an attribute of the
request's server span, which FastAPI itself opens (its OpenTelemetry instrumentation) as the root of
the upload's trace."""

from __future__ import annotations

from shared.logs import REQUEST_ID, REQUEST_ID_HEADER, clean_request_id, new_request_id
from shared.tracing import enabled as tracing_enabled

HEADER = REQUEST_ID_HEADER.lower().encode()


class RequestId:
    def __init__(self, app) -> None:  # noqa: ANN001 - ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v.decode("latin-1") for k, v in scope["headers"] if k == HEADER), None)
        rid = clean_request_id(sent) or new_request_id()
        token = REQUEST_ID.set(rid)
        if tracing_enabled():  # FastAPI's own server span (the trace's root) gets the id too
            from opentelemetry import trace

            trace.get_current_span().set_attribute("wardrobe.request_id", rid)

        async def send_with_id(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)

