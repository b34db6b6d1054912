"""Job completion events on Redis pub/sub, so a waiting gateway learns of them at once.

Events are hints: the job row stays the truth (a waiter re-reads it), and a lost event only
costs the waiter its fallback poll interval.
"""

from __future__ import annotations

import logging
import threading

import redis

__all__ = ["jobs_channel", "EventPublisher"]

log = logging.getLogger(__name__)


def jobs_channel(namespace: str) -> str:
    return f"{namespace}:events:jobs"


class EventPublisher:
    """Publishes ``<job id>`` on the jobs channel; one lazily created client per process."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis_url, self.channel = redis_url, jobs_channel(namespace)
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            return self._client

    def job_finished(self, job_id: str) -> None:
        try:
            self._redis().publish(self.channel, job_id)
        except redis.RedisError as exc:  # the row is committed; waiters fall back to polling
            log.warning("could not publish completion of job %s: %s", job_id, exc)
