"""Re-hedging a finished job for another accuracy target, in the gateway process.

A re-hedge is a pure function of the stored probabilities and the model version's calibration,
so the gateway answers it with the hedging library directly (well under a millisecond) instead
of a round trip through the hedger's queue, where it would wait behind new classifications.
Nothing is written: the job keeps the answer it was classified with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.gateway.database import Database
from services.gateway.errors import RehedgeFailed
from shared.model_hedgers import ModelHedgers
from shared.schemas import HedgedAnswer

if TYPE_CHECKING:
    from services.gateway.jobcache import JobView

__all__ = ["Rehedger"]


class Rehedger:
    """The Hedger of each model version, built once (its card read on the first re-hedge)."""

    def __init__(self, hedgers: ModelHedgers, database: Database) -> None:
        self.hedgers, self.database = hedgers, database

    async def rehedge(self, job: "JobView", accuracy: float) -> HedgedAnswer:
        """The job's answer at ``accuracy``, by the method that answered it (its top predictions
        stay as stored)."""
        stored = job.public.answer
        version = job.public.model_version
        if stored is None or job.leaf_probs is None or version is None:
            raise RehedgeFailed(f"job {job.public.id} has no stored probabilities to re-hedge")
        try:
            hedger = self.hedgers.cached(version) or await self.database.run(self.hedgers.load, version)
            return hedger.hedge(job.leaf_probs, accuracy, stored.method)
        except ValueError as exc:  # HedgeInputError, CalibrationError: the stored job cannot be re-hedged
            raise RehedgeFailed(f"job {job.public.id} cannot be re-hedged: {exc}") from exc
