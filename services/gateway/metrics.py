"""Prometheus metrics of the gateway (served at /metrics)."""

from prometheus_client import Counter, Histogram

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
