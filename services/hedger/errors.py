"""Errors of the hedger worker (the hedging library's own are in ``shared.hedging.errors``)."""

from __future__ import annotations

__all__ = ["HedgingError"]


class HedgingError(RuntimeError):
    """The job cannot be hedged (it has no probabilities); not worth a retry."""
