"""What one process remembers about run logs, so that steps read O(1) bytes instead of the whole file.

A cache entry is valid while the log's inode stays the same; each call merges what it learns into it,
and it is dropped when the file was replaced or a write failed. `OpenLogs` also keeps the runs' append
descriptors open, the least recently used closed first, so a store of any number of runs stays within
a file limit.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from loopengt_core.model.bounded import CACHED_RUNS_ENV, LRU, OPEN_FILES_ENV, env_count
from loopengt_core.store.files.records import EVENTS
from loopengt_core.store.files.runfiles import RunFiles

MAX_POINTS = 4096


@dataclass
class RunCache:
    """What this process knows about one events.jsonl, valid while the inode stays the same.

    `size` is the file size when last looked at; `clean` the offset just after the last good line (less
    than `size` only when a torn tail follows); `points` maps a seq to the offset just after its line.
    `verified`: the log up to this offset was checked in this process (lines parsed, or the bytes behind
    a snapshot against its `prefix_crc`); `prefix`: (offset, CRC-32 of the bytes before it), known good.
    """

    ino: int
    size: int
    clean: int
    last_seq: int
    verified: int = 0
    prefix: tuple[int, int] = (0, 0)
    points: dict[int, int] = field(default_factory=lambda: {0: 0})
    keys: list[int] = field(default_factory=lambda: [0])

    def add_point(self, seq: int, offset: int) -> None:
        """Remember that event `seq` ends at `offset`, thinning the points out when there are too many."""
        if seq in self.points:
            return
        self.points[seq] = offset
        bisect.insort(self.keys, seq)
        if len(self.keys) > MAX_POINTS:  # thin out evenly, keeping 0 and the newest point
            keep = set(self.keys[::2]) | {0, self.keys[-1]}
            self.keys = sorted(keep)
            self.points = {k: self.points[k] for k in self.keys}

    def unchanged(self, st: os.stat_result) -> bool:
        """Whether the file is still exactly what we saw: same size, and no torn tail in it then.

        A torn tail may be truncated by another process's append and replaced by a complete batch of the
        same length, which leaves inode and size as they were; so with a torn tail the size proves nothing.
        """
        return st.st_size == self.size == self.clean

    def best_point(self, seq: int) -> tuple[int, int]:
        """The known (seq, offset) closest to but not after `seq`."""
        best = self.keys[bisect.bisect_right(self.keys, seq) - 1]
        if best < self.last_seq <= seq:
            return self.last_seq, self.clean
        return best, self.points[best]


class OpenLogs:
    """The cached knowledge and open append descriptors of one store's logs, under the store's mutex.

    `held` maps a run id to the thread holding its lock: that run's descriptor is never closed to make
    room, because the holder may be writing to it right now.
    """

    def __init__(
        self, files: RunFiles, mutex: threading.Lock, held: dict[str, int], max_open_files: int | None
    ) -> None:
        """`max_open_files`: append descriptors kept open (default LOOPENGT_OPEN_FILES, else 64)."""
        self._files = files
        self._mutex = mutex
        # What is known of each log (offsets, last seq): small, so many more runs than open files.
        self._caches: LRU[str, RunCache] = LRU(8 * env_count(CACHED_RUNS_ENV, 64))
        self._fds: LRU[str, int] = LRU(
            max_open_files or env_count(OPEN_FILES_ENV, 64),
            evict=lambda _, fd: os.close(fd),
            busy=held.__contains__,  # its run's lock holder may be writing to it right now
        )

    def append_fd(self, run_id: str) -> int:
        """The cached O_APPEND fd of the run's log, reopened if the file was replaced."""
        path = self._files.path(run_id, EVENTS)
        self._files.own_dir(run_id)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise self._files.not_found(run_id) from None
        with self._mutex:
            fd = self._fds.get(run_id)
            if fd is not None and os.fstat(fd).st_ino == st.st_ino:
                return fd
            if fd is not None:
                os.close(fd)
                self._fds.pop(run_id)
            fd = self._files.open_log(run_id, os.O_RDWR | os.O_APPEND)
            self._fds[run_id] = fd
            return fd

    def forget(self, run_id: str) -> None:
        """Drop what we cached about a run after a failed write: the next call re-reads the tail."""
        with self._mutex:
            self._caches.pop(run_id)
            fd = self._fds.pop(run_id)
        if fd is not None:
            with suppress(OSError):
                os.close(fd)

    def cache(self, run_id: str, st: os.stat_result) -> RunCache | None:
        """What is known of the run's log `st`, or None (never seen, or the file was replaced)."""
        with self._mutex:
            cache = self._caches.get(run_id)
            if cache is not None and (cache.ino != st.st_ino or st.st_size < cache.clean):
                self._caches.pop(run_id)  # the file was replaced or rewritten: nothing we knew holds
                cache = None
            return cache

    def remember(
        self,
        run_id: str,
        st: os.stat_result,
        *,
        clean: int | None = None,
        last_seq: int | None = None,
        points: Sequence[tuple[int, int]] = (),
        verified: int = 0,
        prefix: tuple[int, int] | None = None,
    ) -> None:
        """Merge what a call learnt into the run's cache (never regressing to an older view)."""
        with self._mutex:
            cache = self._caches.get(run_id)
            if cache is None or cache.ino != st.st_ino:
                if clean is None or last_seq is None:
                    return
                cache = self._caches[run_id] = RunCache(st.st_ino, st.st_size, clean, last_seq)
            elif clean is not None and last_seq is not None and last_seq >= cache.last_seq:
                cache.size, cache.clean, cache.last_seq = st.st_size, clean, last_seq
            for seq, offset in points:
                cache.add_point(seq, offset)
            cache.verified = max(cache.verified, verified)
            if prefix is not None and prefix[0] >= cache.prefix[0]:
                cache.prefix = prefix

    def clear(self) -> list[int]:
        """Forget every cache; returns the append descriptors, for the caller to close."""
        with self._mutex:
            fds = self._fds.clear()
            self._caches.clear()
        return fds
