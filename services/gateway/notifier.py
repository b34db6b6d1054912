"""Learning of job completions (and re-hedge results) as they happen, over Redis pub/sub.

One subscription per gateway process: a reader task wakes whoever waits on a job id or channel.
Messages are hints; waiters re-read the truth (the job row, the result key) after each wake-up and
also every ``fallback_poll_s``, so a lost message costs at most that much latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from shared.events import jobs_channel

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.redis = redis
        self.jobs_channel = jobs_channel(namespace)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)  # job id or channel -> events
        self._channels: dict[str, int] = {}  # extra channels -> watcher count
        self._pubsub: aioredis.client.PubSub | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        self._stopping = True  # the reader's loop ends even if the Redis client swallows the cancel
        if self._task:
            self._task.cancel()
            try:  # bounded: shutting down must never hang on a half-open connection
                await asyncio.wait_for(asyncio.shield(self._task), 2.0)
            except (asyncio.CancelledError, TimeoutError, Exception):  # noqa: BLE001
                pass
        self._wake_all()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.jobs_channel, *self._channels)
                async for message in self._pubsub.listen():
                    channel = _text(message["channel"])
                    key = _text(message["data"]) if channel == self.jobs_channel else channel
                    for event in self._waiters.get(key, ()):
                        event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; waiters poll meanwhile
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    # a cancel turned into a connection error inside the client: stop, don't reconnect
                    raise asyncio.CancelledError from exc
                log.warning("completion events interrupted (%s); reconnecting", exc)
                self._wake_all()
                await asyncio.sleep(0.5)
            finally:
                pubsub, self._pubsub = self._pubsub, None
                if pubsub is not None:
                    try:
                        await asyncio.wait_for(pubsub.aclose(), 1.0)
                    except BaseException:  # noqa: BLE001 - also when cancelled: closing is best effort
                        pass

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @asynccontextmanager
    async def watch(self, key: str, channel: bool = False) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``key`` (a job id, or with ``channel`` a pub/sub channel) fires.
        Enter *before* reading the state you wait on, so no message can slip in between."""
        event = asyncio.Event()
        self._waiters[key].add(event)
        if channel:
            self._channels[key] = self._channels.get(key, 0) + 1
            if self._channels[key] == 1 and self._pubsub is not None:
                try:
                    await self._pubsub.subscribe(key)
                except Exception as exc:  # noqa: BLE001 - polling still finds the answer
                    log.warning("could not subscribe to %s: %s", key, exc)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]
            if channel:
                self._channels[key] -= 1
                if self._channels[key] == 0:
                    del self._channels[key]
                    if self._pubsub is not None:
                        try:
                            await self._pubsub.unsubscribe(key)
                        except Exception:  # noqa: BLE001
                            pass


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds, then clear it."""
    if timeout > 0:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
    event.clear()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
