"""Re-hedging a finished job for another accuracy target, in the gateway process.

A re-hedge is a pure function of the stored probabilities and the model version's calibration,
so the gateway answers it with the hedging library directly (well under a millisecond) instead
of a round trip through the hedger's queue, where it would wait behind new classifications.
Nothing is written: the job keeps the answer it was classified with.
"""

from __future__ import annotations

from services.gateway.api.deps import Database
from services.gateway.errors import RehedgeFailed
from shared.model_hedgers import ModelHedgers
from shared.schemas import ClassificationResult
from shared.tables import ClassificationJob

__all__ = ["Rehedger"]


class Rehedger:
    """The Hedger of each model version, built once (its card read on the first re-hedge)."""

    def __init__(self, hedgers: ModelHedgers, database: Database) -> None:
        self.hedgers, self.database = hedgers, database

    async def rehedge(self, job: ClassificationJob, accuracy: float) -> ClassificationResult:
        """The job's answer at ``accuracy``, by the method that answered it; same top predictions."""
        if job.result is None or job.leaf_probs is None or job.model_version is None:
            raise RehedgeFailed(f"job {job.id} has no stored probabilities to re-hedge")
        stored = ClassificationResult.model_validate(job.result)
        try:
            hedger = self.hedgers.cached(job.model_version) or await self.database.run(
                self.hedgers.load, job.model_version)
            answer = hedger.hedge(job.leaf_probs, accuracy, stored.answer.method)
        except ValueError as exc:  # HedgeInputError, CalibrationError: the stored job cannot be re-hedged
            raise RehedgeFailed(f"job {job.id} cannot be re-hedged: {exc}") from exc
        return ClassificationResult(answer=answer, top_predictions=stored.top_predictions)
