"""Bounded per-run caches: a server may hold 10,000 runs, but keeps only the recently used ones open.

`LOOPENGT_OPEN_FILES` (default 64) bounds the append file descriptors the file store keeps open, and
`LOOPENGT_CACHED_RUNS` (default 64) the run states the service keeps in memory; what falls out is
reopened or reloaded (snapshot + the events after it) when next used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from loopengt_core.model.errors import InvalidArgument

K = TypeVar("K")
V = TypeVar("V")

OPEN_FILES_ENV = "LOOPENGT_OPEN_FILES"
CACHED_RUNS_ENV = "LOOPENGT_CACHED_RUNS"


def env_count(name: str, default: int) -> int:
    """A positive whole number from the environment variable `name` (unset or empty: `default`).

    Raises:
        InvalidArgument: naming the variable and what it takes.
    """
    raw = os.environ.get(name, "").strip() or str(default)
    if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
        raise InvalidArgument(f"{name}={raw!r}: use a positive whole number")
    return int(raw)


class LRU(Generic[K, V]):
    """A mapping that keeps at most `limit` entries, dropping the least recently used first.

    `evict(key, value)` is told of each dropped entry (to close a file); an entry for which `busy(key)`
    holds is never dropped (a file another thread is writing), so the bound can be exceeded while
    every older entry is busy. Not thread-safe: callers hold their own lock.
    """

    def __init__(
        self,
        limit: int,
        *,
        evict: Callable[[K, V], None] | None = None,
        busy: Callable[[K], bool] | None = None,
    ) -> None:
        if limit < 1:
            raise InvalidArgument(f"a cache must hold at least one entry, not {limit}")
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()
        self._evict = evict
        self._busy = busy

    def get(self, key: K) -> V | None:
        """The value kept for `key` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.limit:
            self._shrink(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def pop(self, key: K) -> V | None:
        """Forget `key`; its value, or None when it was not kept."""
        return self._items.pop(key, None)

    def clear(self) -> list[V]:
        """Forget every entry; returns their values (for the caller to close)."""
        values = list(self._items.values())
        self._items.clear()
        return values

    def _shrink(self, newest: K) -> None:
        for key in list(self._items):
            if len(self._items) <= self.limit:
                return
            if key == newest or (self._busy is not None and self._busy(key)):
                continue
            value = self._items.pop(key)
            if self._evict is not None:
                self._evict(key, value)
