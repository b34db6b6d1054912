"""Which stages have a live worker, from the workers' heartbeats in Redis (``shared.heartbeat``).

The gateway's readiness does not depend on it by default: a gateway that can accept and answer
(Redis, the database, an active model) stays in the Service while every inference pod is down, so
finished results and ``/v1/taxonomy`` are still served and new uploads are accepted and wait in the
queue. Stage liveness is reported by ``/readyz`` (informational unless ``READY_STAGES`` names the
stage), exported by the sweeper as ``wardrobe_stage_live_workers`` and alerted on
(deploy/monitoring/). An operator who prefers a clear refusal sets ``REFUSE_WITHOUT_WORKERS``: an
upload while the inference or hedger stage has no live worker is then a 503 ``no_live_worker``.
"""

from __future__ import annotations

import time

from services.gateway.errors import NoLiveWorker
from shared.heartbeat import HEARTBEAT_TTL_S, STAGES, heartbeat_key

__all__ = ["PIPELINE", "live_counts", "require_pipeline"]

PIPELINE = ("inference", "hedger")  # the stages an accepted classification needs


async def live_counts(redis, namespace: str, now: float | None = None) -> dict[str, int]:  # noqa: ANN001
    """Live workers per stage: those that beat within HEARTBEAT_TTL_S of ``now`` (one ZCOUNT each)."""
    now = time.time() if now is None else now
    pipe = redis.pipeline()
    for stage in STAGES:
        pipe.zcount(heartbeat_key(namespace, stage), now - HEARTBEAT_TTL_S, "+inf")
    return dict(zip(STAGES, await pipe.execute()))


async def require_pipeline(redis, namespace: str, now: float | None = None) -> None:  # noqa: ANN001
    counts = await live_counts(redis, namespace, now)
    missing = [stage for stage in PIPELINE if not counts[stage]]
    if missing:
        raise NoLiveWorker(f"no live {' or '.join(missing)} worker: the upload would wait; retry later")
