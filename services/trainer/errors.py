"""The trainer's domain errors (the CLI prints them in one line; a job fails with them)."""

from __future__ import annotations

__all__ = ["RefitError"]


class RefitError(ValueError):
    """A training request that cannot make a sensible model (no photos, unknown class, a node
    that is not in the taxonomy...)."""
