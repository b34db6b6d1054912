"""API keys resolved once per AUTH_CACHE_S seconds instead of on every request.

Why: every request is authenticated, and resolving a key is a database round trip in the thread
pool (a session, a SELECT, a commit). For a re-hedge, which is otherwise answered from memory,
that round trip was most of the gateway's CPU, taken from the classifications sharing the
process. A key resolved less than ``ttl_s`` ago is trusted without asking again.

What it costs: a key revoked in the database (``wardrobe keys revoke --database``, or through
another gateway) keeps working for up to ``ttl_s`` on a gateway that resolved it just before (one
revoked through this gateway's ``DELETE /v1/keys/{id}`` is dropped here at once, ``forget``);
``ttl_s`` 0 asks the database on every request, as before. The same goes for the other columns of the key (role,
limits). Only keys that resolved are kept: an unknown or revoked key is looked up every time, so
a flood of forged keys has nothing to fill, and at most ``MAX_KEYS`` keys are held (least
recently used out first). Entries are keyed by the token's sha256, the digest the database
stores, not by the secret itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.gateway.database import Database
from services.gateway.lru import LRU
from shared import api_keys
from shared.auth import Caller

__all__ = ["KeyResolver", "MAX_KEYS"]

MAX_KEYS = 10_000  # valid keys only: operators create them, clients cannot add any


class KeyResolver:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cache: LRU[str, Caller] = LRU(MAX_KEYS, ttl_s, clock)

    async def resolve(self, database: Database, token: str) -> Caller | None:
        """The caller ``token`` stands for, or None (unknown or revoked)."""
        digest = api_keys.hash_secret(token)
        caller = self.cache.get(digest)
        if caller is None:
            caller = await database.run(api_keys.resolve, token)
            if caller is not None:
                self.cache.put(digest, caller)
        return caller

    async def resolve_id(self, database: Database, key_id: str) -> Caller | None:
        """The caller of a browser session's key row by its id (``services.gateway.sessions``), or
        None (no such key, or revoked); cached the same way, under a name no digest can take."""
        from services.gateway.sessions import caller_by_key_id

        name = f"id:{key_id}"
        caller = self.cache.get(name)
        if caller is None:
            caller = await database.run(caller_by_key_id, key_id)
            if caller is not None:
                self.cache.put(name, caller)
        return caller

    def forget(self, key_id: str) -> None:
        """Stop trusting key ``key_id`` in this gateway at once (it was revoked through it): its
        entries by digest and by id (a browser session's) alike."""
        self.cache.discard(lambda caller: caller.id == key_id)
