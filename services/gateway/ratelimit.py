"""Per-key request rate limits: a fixed one-minute window counted in Redis.

Redis (not process memory) so the limit holds across gateway replicas. A fixed window lets a key
send up to twice its limit across a window boundary; that is the price of one INCR per request,
and the limit is there against floods, not for billing. If Redis cannot be reached the request is
let through (the classification itself would fail on the queue anyway) and a warning logged.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

WINDOW_S = 60


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.redis, self.namespace = redis, namespace

    async def hit(self, key_id: str, limit_per_minute: int) -> int | None:
        """Count one request of ``key_id``; None if allowed, else the seconds until it may retry."""
        if limit_per_minute <= 0:
            return None
        now = time.time()
        window = int(now // WINDOW_S)
        key = f"{self.namespace}:ratelimit:{key_id}:{window}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                count, _ = await pipe.incr(key).expire(key, WINDOW_S + 1).execute()
        except Exception as exc:  # noqa: BLE001 - fail open: availability over throttling
            log.warning("rate limit not checked for key %s: %s", key_id, exc)
            return None
        if count <= limit_per_minute:
            return None
        return max(1, int((window + 1) * WINDOW_S - now + 0.999))
