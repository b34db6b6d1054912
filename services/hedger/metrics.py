"""Prometheus metrics of the hedger worker (served on METRICS_PORT, ``shared.metrics``).

``wardrobe_hedge_seconds`` and ``wardrobe_hedge_results_total`` count each hedged classification
once, by model version and method; ``level`` says whether the answer is a leaf (as specific as the
taxonomy goes) or a hedged inner node. Failures by code are ``wardrobe_job_failures_total{stage="hedger"}``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.metrics import JOB_FAILURES, LATENCY_BUCKETS

__all__ = ["HEDGE_SECONDS", "RESULTS"]

HEDGE_SECONDS = Histogram("wardrobe_hedge_seconds", "Time to hedge one classification (Hedger lookup + DARTS/CRC).",
                          ["model_version", "method"], buckets=LATENCY_BUCKETS)
RESULTS = Counter("wardrobe_hedge_results_total", "Hedged classifications, by model version, method and whether the "
                  "answer is a leaf or an inner node.", ["model_version", "method", "level"])

JOB_FAILURES.labels(stage="hedger", code="hedging_failed")  # 0 until the first failure (a rate, not "no data")
