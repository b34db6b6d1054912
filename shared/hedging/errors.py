"""Hedger errors. Both subclass ValueError: a bad request or a bad calibration is a value problem,
and callers that only know ValueError still catch them."""

from __future__ import annotations

__all__ = ["HedgeInputError", "CalibrationError"]


class HedgeInputError(ValueError):
    """The request is unusable: accuracy outside [0.5, 0.999], wrong vector length, NaNs, …"""


class CalibrationError(ValueError):
    """The calibration does not fit the taxonomy or model it is used with."""
