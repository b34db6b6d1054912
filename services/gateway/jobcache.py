"""Classification jobs as the read route answers them, finished ones kept in memory.

Why: a re-hedge (``GET /v1/classifications/{id}?accuracy=``) of a finished job needs the job's
stored probabilities, answer and owner. Reading them is a database round trip in the thread pool
plus parsing the stored JSON, many times the CPU of the hedging itself, and a crowd of re-hedges
took that CPU from new classifications in the same process.

Why it is safe: a finished job's row never changes again. Every writer re-reads the row and
leaves a finished job as it is (inference claims only unfinished jobs, the hedger only running
ones, ``jobs.mark_failed`` and the sweeper skip finished ones; feedback goes to its own table and
only locks the row), and nothing deletes a job. So a finished job read once can be answered from
memory for as long as the gateway runs, and every gateway's copy agrees with the database.
Unfinished jobs are always read from the database. Whose job it is is part of what is kept, and
the route checks it on every request exactly as for a row just read.

Bounded: ``size`` jobs (JOB_CACHE_SIZE), least recently used out first; 0 turns it off.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from services.gateway import crud
from services.gateway.database import Database
from services.gateway.lru import LRU
from shared import jobs
from shared.schemas import ClassificationPublic, HedgedAnswer
from shared.tables import ClassificationJob, JobStatus

__all__ = ["JobView", "JobCache"]


@dataclass(frozen=True)
class JobView:
    """What the read route needs of a job, parsed once: the answer as stored (``public``) and
    what a re-hedge needs."""

    owner_id: str | None
    finished: bool
    rehedgeable: bool  # done, with stored probabilities
    leaf_probs: tuple[float, ...] | None
    public: ClassificationPublic

    @classmethod
    def of(cls, job: ClassificationJob) -> JobView:
        return cls(owner_id=job.owner_id, finished=job.status.finished,
                   rehedgeable=job.status is JobStatus.done and job.leaf_probs is not None,
                   leaf_probs=tuple(job.leaf_probs) if job.leaf_probs is not None else None,
                   public=crud.to_public(job))

    def rehedged(self, answer: HedgedAnswer, accuracy: float) -> ClassificationPublic:
        """The answer for another target: the stored one with the re-hedged answer in its place."""
        return self.public.model_copy(update={"answer": answer, "accuracy_target": accuracy, "rehedged": True})


def _read(session: Session, key: uuid.UUID) -> JobView | None:
    job = jobs.get_job(session, key)
    return JobView.of(job) if job is not None else None


class JobCache:
    def __init__(self, size: int) -> None:
        self.cache: LRU[uuid.UUID, JobView] = LRU(size)

    async def read(self, database: Database, job_id: str) -> JobView | None:
        """The job (None: no such job), from memory when it is finished and was read before."""
        key = jobs.parse_job_id(job_id)
        if key is None:
            return None
        view = self.cache.get(key)
        if view is None:
            view = await database.run(_read, key)
            self.remember(key, view)
        return view

    def remember(self, key: uuid.UUID, view: JobView | None) -> None:
        if view is not None and view.finished:
            self.cache.put(key, view)
