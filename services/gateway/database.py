"""The gateway's handle on the database: a synchronous SQLAlchemy session, used from the event loop.

Its own module, below the HTTP layer: the caches (``keycache``, ``jobcache``), the re-hedger and
the routes all use it, and ``api/deps.py`` only hands it to routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shared.db import session_scope

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """Runs ``fn(session, *args)`` in a worker thread inside one transaction (committed on return)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with session_scope(self.url) as session:
            return fn(session, *args)

    async def run(self, fn: Callable[[Session], T] | Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(self._call, fn, *args)
