"""Group commit for the file store: the fdatasyncs of appends made on an event loop run off it, overlapped.

Each run has its own log, so one fdatasync cannot cover two runs' lines; what two runs can share is the
filesystem's journal commit, and only when their fdatasyncs are in flight at the same time (ext4 folds
concurrent ones into one commit: measured here, 8 threads syncing 8 files reach 2.4-9x the syncs/s of
one, while one thread syncing the 8 files in turn gets 0.5-1.9x). Threads calling `FileStore.append`
overlap by themselves; an event loop does not: a step's fsync there holds up every other client. So a
caller on the loop writes its lines under the run's lock, hands the fsync to `GroupSync` and is answered
once the fsync that started after its write has returned (`FileStore.deferring`).

Gathering: a sync asked for while an earlier one of the same log is still queued (not started) shares it,
since it will cover both writes; one already running does not cover a later write, so a new one queues.

`LOOPENGT_FSYNC_STATS=PATH` counts every log fdatasync of the process (inline and grouped) and how many
began while another was in flight, written to PATH as JSON (bench/concurrency.py reads it).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = [
    "FSYNC_STATS_ENV",
    "GROUP_COMMIT_ENV",
    "GroupSync",
    "SyncStats",
    "SyncTimer",
    "counted_sync",
    "group_commit_enabled",
    "sync_stats",
]

GROUP_COMMIT_ENV = "LOOPENGT_GROUP_COMMIT"
FSYNC_STATS_ENV = "LOOPENGT_FSYNC_STATS"
_WORKERS = 8  # fsyncs in flight at once; more gain little on one disk and cost threads


def group_commit_enabled() -> bool:
    """On unless LOOPENGT_GROUP_COMMIT is 0/off/false/no (the benchmarks compare both)."""
    return os.environ.get(GROUP_COMMIT_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


class SyncStats:
    """Counts fdatasyncs and their overlap; saved to its file every 0.2 s while changing, and at exit.

    `began_with[k]`: how many fsyncs began while k others were in flight (k capped at 15), so a reader
    can take the difference of two readings to see one phase's overlap.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.syncs = 0
        self.inflight = 0
        self.began_with = [0] * 16
        self._lock = threading.Lock()
        self._saved = -1
        self._saving = threading.Lock()
        self._closed = False
        atexit.register(self.save)
        threading.Thread(target=self._flusher, name="loopengt-fsync-stats", daemon=True).start()

    def wrap(self, sync: Callable[[int], None]) -> Callable[[int], None]:
        """`sync`, counted."""

        def counted(fd: int) -> None:
            with self._lock:
                self.syncs += 1
                self.began_with[min(self.inflight, 15)] += 1
                self.inflight += 1
            try:
                sync(fd)
            finally:
                with self._lock:
                    self.inflight -= 1

        return counted

    def reading(self) -> dict[str, Any]:
        """The counts now: fdatasyncs made, and how many others each began alongside."""
        with self._lock:
            return {"syncs": self.syncs, "began_with": list(self.began_with)}

    def save(self) -> None:
        """Write the counts to the stats file (atomically); diagnostics only, so a failed write is ignored."""
        with self._saving:
            if self._closed:
                return
            data = self.reading()
            self._saved = data.get("syncs", 0)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(data))
                os.replace(tmp, self.path)
            except OSError:
                pass  # diagnostics only: a stats file that cannot be written never fails a step

    def close(self) -> None:
        """Stop writing the file (counting goes on): its folder may be removed next, and a write racing
        the removal would leave the folder behind."""
        with self._saving:
            self._closed = True
        atexit.unregister(self.save)

    def _flusher(self) -> None:
        while not self._closed:
            time.sleep(0.2)
            if self.syncs != self._saved:
                self.save()


_stats: dict[str, SyncStats] = {}  # one per stats file (one file per process in practice)
_stats_lock = threading.Lock()


class SyncTimer:
    """A sync function that remembers how long its recent calls took (an exponential average).

    Handing an fsync to a GroupSync thread costs the event loop's thread a wake-up of another thread and
    back (on this VM about as much CPU as a 0.3-0.4 ms fsync, py-spy at 8 HTTP clients): a disk that
    syncs faster than that is better synced inline, one that takes milliseconds better in a thread. The
    server asks this average which it is (loopengt_core.service.async_submit.Overlap).
    """

    WEIGHT = 0.2  # of the newest call

    def __init__(self, sync: Callable[[int], None]) -> None:
        self._sync = sync
        self.recent: float | None = None  # seconds; None before the first call

    def __call__(self, fd: int) -> None:
        t0 = time.perf_counter()
        try:
            self._sync(fd)
        finally:
            took = time.perf_counter() - t0
            last = self.recent  # a race between two threads loses one sample of an average, no more
            self.recent = took if last is None else last + self.WEIGHT * (took - last)


def counted_sync(sync: Callable[[int], None]) -> Callable[[int], None]:
    """`sync` itself, or counted into the process's SyncStats when LOOPENGT_FSYNC_STATS names a file."""
    path = os.environ.get(FSYNC_STATS_ENV)
    if not path:
        return sync
    with _stats_lock:
        stats = _stats.get(path) or _stats.setdefault(path, SyncStats(path))
    return stats.wrap(sync)


def sync_stats() -> SyncStats | None:
    """This process's counters (LOOPENGT_FSYNC_STATS set and a store opened), else None."""
    with _stats_lock:
        return _stats.get(os.environ.get(FSYNC_STATS_ENV, ""))


class _Queued:
    """One fsync of one log, waited for by every write made before it started."""

    def __init__(self, fd: int) -> None:
        self.fd = fd  # a dup of the append fd: the store may close its own while we wait
        self.started = False
        self.future: Future[None] = Future()


class GroupSync:
    """fdatasyncs on a small pool of threads, one queued per log at a time (see the module docstring).

    `before`/`after` run on the pool thread around each fsync (the crash tests' kill points).
    """

    def __init__(
        self,
        sync: Callable[[int], None],
        *,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        self._sync = sync
        self._before, self._after = before, after
        self._queued: dict[str, _Queued] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, key: str, fd: int) -> Future[None]:
        """A future done once an fsync of `fd` that began after this call has returned (or failed)."""
        with self._lock:
            waiting = self._queued.get(key)
            if waiting is not None and not waiting.started:
                return waiting.future
            job = self._queued[key] = _Queued(os.dup(fd))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="loopengt-fsync")
            pool = self._pool
        try:
            pool.submit(self._run, key, job)
        except BaseException:
            with self._lock:
                if self._queued.get(key) is job:
                    del self._queued[key]
            os.close(job.fd)
            raise
        return job.future

    def _run(self, key: str, job: _Queued) -> None:
        with self._lock:
            job.started = True
        try:
            if self._before is not None:
                self._before()
            self._sync(job.fd)
            if self._after is not None:
                self._after()
        except Exception as exc:  # noqa: BLE001 - handed to the waiters, who raise it
            job.future.set_exception(exc)
        else:
            job.future.set_result(None)
        finally:
            with self._lock:
                if self._queued.get(key) is job:
                    del self._queued[key]
            os.close(job.fd)

    def close(self) -> None:
        """Wait for the fsyncs in flight and stop the threads (a later submit starts them again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
