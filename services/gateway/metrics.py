"""Prometheus metrics of the gateway, served on METRICS_PORT (``shared.metrics``: no key, nothing but
``GET /metrics``) and, for an operator key, at the API's ``/metrics``."""

import time

from prometheus_client import Counter, Histogram

from shared.metrics import LATENCY_BUCKETS

CLASSIFICATIONS = Counter(
    "wardrobe_classifications_total", "Classification requests by outcome.", ["outcome"]
)
ACCEPT_SECONDS = Histogram(
    "wardrobe_classification_accept_seconds", "Validate + store + enqueue time of a POST.",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
REHEDGES = Counter("wardrobe_rehedges_total", "Re-hedge requests by outcome.", ["outcome"])
AUTH_REFUSALS = Counter(
    "wardrobe_auth_refusals_total", "Requests refused by the access check, by reason.", ["reason"]
)  # no_key, unknown_key (forged or revoked), forbidden (role), rate_limited,
# unknown_session (a browser session cookie forged, expired or revoked), csrf
HTTP_REQUESTS = Counter("wardrobe_http_requests_total", "HTTP requests answered, by method, route template and "
                        "status code (the error-rate alert divides the 5xx by all).", ["method", "route", "status"])
HTTP_SECONDS = Histogram("wardrobe_http_request_seconds", "Time to answer a request (a ?wait= included), by method "
                         "and route template.", ["method", "route"], buckets=LATENCY_BUCKETS + (60.0,))


class RequestMetrics:
    """ASGI middleware counting each answered request by its *route template* (``/v1/classifications/{id}``,
    never the id: bounded label values); a path no route matched counts as ``unmatched``."""

    def __init__(self, app) -> None:  # noqa: ANN001 - ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # the app raised before answering
        t0 = time.perf_counter()

        async def send_with_status(message) -> None:  # noqa: ANN001
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUESTS.labels(method=scope["method"], route=route, status=str(status)).inc()
            HTTP_SECONDS.labels(method=scope["method"], route=route).observe(time.perf_counter() - t0)
