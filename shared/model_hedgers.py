"""The :class:`~shared.hedging.hedging.Hedger` of each model version, built once per process.

A version's card never changes, so its calibration is validated and its Hedger built the first
time a job of that version is hedged, then reused: the hedger worker (every new classification)
and the gateway (re-hedging a finished job for another accuracy target) both keep one of these.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from shared import registry
from shared.hedging.errors import CalibrationError
from shared.hedging.hedging import Hedger
from shared.model_card import ModelCard, card_taxonomy
from shared.taxonomy import Taxonomy, TaxonomyError

__all__ = ["ModelHedgers"]


class ModelHedgers:
    """Version → Hedger, thread-safe. :meth:`cached` never touches the database."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self._hedgers: dict[str, Hedger] = {}
        self._lock = threading.Lock()

    def cached(self, version: str) -> Hedger | None:
        return self._hedgers.get(version)

    def load(self, session: Session, version: str) -> Hedger:
        """The version's Hedger, reading and validating its card from the registry if not cached.

        Raises :class:`CalibrationError` when the version is unknown, has no hedger calibration,
        or was calibrated for another taxonomy than its card's (or, for a card without one, the
        served file).
        """
        hit = self._hedgers.get(version)
        if hit is not None:
            return hit
        row = registry.get_version(session, version)
        if row is None:
            raise CalibrationError(f"model version {version!r} is not in the registry")
        card = ModelCard.model_validate(row.card)
        if card.calibration is None:
            raise CalibrationError(f"model version {version!r} has no hedger calibration in its card")
        try:  # the tree the version was trained with (its card's), so a leaf added since changes nothing
            taxonomy = card_taxonomy(card, self.taxonomy)
        except TaxonomyError as exc:
            raise CalibrationError(str(exc)) from None
        hedger = Hedger(taxonomy, card.calibration, card.classes)
        with self._lock:
            return self._hedgers.setdefault(version, hedger)
