"""The notifier's reader stops on shutdown even when the Redis client turns the cancel into a
connection error (seen as a test run hanging in TestClient teardown)."""

from __future__ import annotations

import asyncio

from services.gateway.notifier import Notifier


class _CancelSwallowingPubSub:
    """Stands in for redis' PubSub at the client boundary: a cancel while reading surfaces as
    ConnectionError, as a half-closed connection does in the real client."""

    async def subscribe(self, *channels: str) -> None:
        return None

    async def listen(self):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()
            raise ConnectionError("connection closed while reading")
        yield {}  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        return None


class _Redis:
    def pubsub(self, ignore_subscribe_messages: bool = True) -> _CancelSwallowingPubSub:
        return _CancelSwallowingPubSub()


def test_stop_ends_the_reader_even_if_the_client_swallows_the_cancel() -> None:
    async def scenario() -> bool:
        notifier = Notifier(_Redis(), "test")  # type: ignore[arg-type]
        await notifier.start()
        await asyncio.sleep(0)  # the reader runs up to its read
        await notifier.stop()
        # stop() waits a bounded time; on a slow machine the reader may still be on its way out
        await asyncio.wait({notifier._task}, timeout=60)
        done = notifier._task.done()
        notifier._task.cancel()
        return done

    assert asyncio.run(asyncio.wait_for(scenario(), 120))
