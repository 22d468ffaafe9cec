"""The run lock of the file store: flock(2) on `<run>/lock` across processes, plus a thread lock per run
within this process, so that one writer at a time appends to a run's log.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from loopengt_core.store import LockBusy
from loopengt_core.store.files.deferred import DeferredSyncs
from loopengt_core.store.files.fsio import io_error
from loopengt_core.store.files.records import EVENTS, LOCK
from loopengt_core.store.files.runfiles import RunFiles


class RunLocks:
    """The run locks of one store. `held` maps a run id to the thread that holds its lock right now."""

    def __init__(
        self, files: RunFiles, deferred: DeferredSyncs, held: dict[str, int], mutex: threading.Lock
    ) -> None:
        """Share `held` with the store's open logs (a held run's descriptor stays open)."""
        self._files = files
        self._deferred = deferred
        self.held = held
        self._mutex = mutex
        self._thread_locks: dict[str, threading.Lock] = {}

    def _thread_lock(self, run_id: str) -> threading.Lock:
        with self._mutex:
            return self._thread_locks.setdefault(run_id, threading.Lock())

    @contextmanager
    def exclusive(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock unless this thread already holds it through `lock()`."""
        if self.held.get(run_id) == threading.get_ident():
            yield
        else:
            with self.lock(run_id):
                yield

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """flock(LOCK_EX) on the run's lock file, plus a per-run thread lock for this process.

        Blocks until free. Not re-entrant; `append` inside the block sees it is held and does not relock.
        """
        return self._lock(run_id, wait=True)

    def try_lock(self, run_id: str) -> AbstractContextManager[None]:
        """`lock` that raises LockBusy instead of waiting: a transition here is a local append+fsync,
        quick enough for an event loop as long as it never waits for another writer (async_submit.quick)."""
        return self._lock(run_id, wait=False)

    @contextmanager
    def _lock(self, run_id: str, *, wait: bool) -> Iterator[None]:
        """Take the thread lock, then the flock; LockBusy instead of waiting when not `wait`."""
        events = self._files.path(run_id, EVENTS)
        if not wait and self._deferred.unsynced and self._deferred.sync_pending(run_id):
            raise LockBusy(run_id)
        self._files.own_dir(run_id)
        if not os.path.isfile(events):
            raise self._files.not_found(run_id)
        mine = self._thread_lock(run_id)
        if not mine.acquire(blocking=wait):
            raise LockBusy(run_id)
        try:
            try:
                fd = os.open(self._files.path(run_id, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise io_error(exc, f"locking run {run_id!r}") from exc
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LockBusy(run_id) from None
                except OSError as exc:
                    raise io_error(exc, f"locking run {run_id!r}") from exc
                self.held[run_id] = threading.get_ident()
                try:
                    yield
                finally:
                    del self.held[run_id]
            finally:
                os.close(fd)  # closing the only fd on the open file description releases the flock
        finally:
            mine.release()
