"""Worker heartbeats in Redis, so ``/readyz`` can tell a stage whose workers are gone.

Each worker process writes ``node -> unix time`` into its stage's sorted set every
``HEARTBEAT_INTERVAL_S``; a stage is live while some node wrote within ``HEARTBEAT_TTL_S``. One
ZCOUNT per stage answers a readiness probe without a broadcast (``celery inspect ping`` costs a
round trip to every worker and a timeout when one is gone). A worker that stops cleanly removes
its entry at once; a killed one ages out after the TTL.

The beat runs on a thread of its own rather than on the worker's event loop: the solo pools
(hedger, trainer) block that loop for the length of a task, and a training run lasts hours.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

__all__ = ["HEARTBEAT_INTERVAL_S", "HEARTBEAT_TTL_S", "STAGES", "heartbeat_key", "beat", "goodbye",
           "live_workers", "install_heartbeat"]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TTL_S = 5.0  # five missed beats (a loaded machine may delay one by seconds), and shorter than a
# restart (a replacement beats under the same node name), so a stage that is down shows as down
STAGES = ("inference", "hedger", "sweeper", "trainer")


def heartbeat_key(namespace: str, stage: str) -> str:
    return f"{namespace}:heartbeats:{stage}"


def beat(client: redis.Redis, namespace: str, stage: str, node: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    key = heartbeat_key(namespace, stage)
    client.pipeline().zadd(key, {node: now}).zremrangebyscore(key, 0, now - 3600).execute()  # old nodes go


def goodbye(client: redis.Redis, namespace: str, stage: str, node: str) -> None:
    client.zrem(heartbeat_key(namespace, stage), node)


def live_workers(client: redis.Redis, namespace: str, stage: str, now: float | None = None,
                 ttl_s: float = HEARTBEAT_TTL_S) -> list[str]:
    now = time.time() if now is None else now
    return sorted(n.decode() if isinstance(n, bytes) else n
                  for n in client.zrangebyscore(heartbeat_key(namespace, stage), now - ttl_s, "+inf"))


class _Heart:
    def __init__(self, redis_url: str, namespace: str, stage: str) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.namespace, self.stage = namespace, stage
        self.node: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, node: str) -> None:
        self.node = node
        if self._thread is None:  # worker_ready fires again after each broker reconnection
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.stage}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                beat(self.client, self.namespace, self.stage, self.node)
            except redis.RedisError as exc:  # broker down: readiness will say so
                log.debug("heartbeat of %s not written: %s", self.node, exc)
            self._stop.wait(HEARTBEAT_INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()
        if self.node is not None:
            try:
                goodbye(self.client, self.namespace, self.stage, self.node)
            except redis.RedisError:
                pass


def install_heartbeat(app: Celery, redis_url: str, namespace: str, stage: str) -> None:
    """Beat for this worker process once its consumer is up (``worker_ready``), stop on shutdown."""
    heart = _Heart(redis_url, namespace, stage)

    @worker_ready.connect(weak=False)
    def _start(sender=None, **_) -> None:  # noqa: ANN001 - Celery's signal signature
        heart.start(getattr(sender, "hostname", None) or app.main)

    @worker_shutting_down.connect(weak=False)  # SIGTERM: readiness drops before the tasks finish
    @worker_shutdown.connect(weak=False)
    def _stop(sender=None, **_) -> None:  # noqa: ANN001
        heart.stop()
