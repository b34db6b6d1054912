"""A bounded map for the gateway's in-process caches (resolved API keys, finished jobs).

Least recently used out first once ``max_entries`` are held, so memory stays bounded whatever
clients send. With ``ttl_s`` an entry also stops being served that long after it was stored
(not after it was last read: a hit does not extend it), measured on ``clock`` (injectable, so
tests move time instead of sleeping). Used from the event loop only, so there is no lock: every
operation is a few dict calls with no ``await`` in between.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, max_entries: int, ttl_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries, self.ttl_s, self.clock = max_entries, ttl_s, clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()  # key -> (value, expires at)

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and (self.ttl_s is None or self.ttl_s > 0)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V) -> None:
        if not self.enabled:
            return
        self._entries[key] = (value, math.inf if self.ttl_s is None else self.clock() + self.ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def discard(self, matches: Callable[[V], bool]) -> None:
        """Drop every entry whose value ``matches`` (a scan: for rare events such as a revocation)."""
        for key in [k for k, (value, _) in self._entries.items() if matches(value)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
