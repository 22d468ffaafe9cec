"""Group commit for the file store: appends inside `deferring()` return once written, and their fsyncs
run together in `groupsync.GroupSync`.

The caller (the MCP server's event loop) answers only once the fsync is done. Until then the run's lines
are not durable, so nothing in this process reads them: opening the run's log or taking its lock first
waits for the fsync (`try_lock` says busy instead), and so does a snapshot. This class keeps the
pending fsync of each run so that the store can wait for it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from loopengt_core.store.files.faults import Faults
from loopengt_core.store.files.fsio import io_error
from loopengt_core.store.groupsync import GroupSync, SyncTimer


class DeferredSyncs:
    """The deferred fsyncs of one store. `forget(run_id)` drops what the store cached about a run whose
    fsync failed; `mutex` is the store's, guarding the lazy start of the GroupSync thread."""

    def __init__(
        self,
        log_sync: Callable[[int], None],
        enabled: bool,
        faults: Faults,
        forget: Callable[[str], None],
        mutex: threading.Lock,
    ) -> None:
        """Nothing runs until the first deferred append; `enabled` is False with LOOPENGT_GROUP_COMMIT=0."""
        self.log_sync = log_sync
        self._group_commit = enabled
        self._faults = faults
        self._forget = forget
        self._mutex = mutex
        self._group: GroupSync | None = None
        self._defer = threading.local()  # .batch: the futures of this thread's deferred appends
        self.unsynced: dict[str, Future[None]] = {}  # run id -> the fsync its last deferred append awaits
        self._unsynced_lock = threading.Lock()  # not the mutex: _own_dir, which waits, runs under it too

    def batch(self) -> list[Future[None]] | None:
        """This thread's open `deferring()` batch, or None: the append then fsyncs itself."""
        batch: list[Future[None]] | None = getattr(self._defer, "batch", None)
        return batch

    @contextmanager
    def deferring(self) -> Iterator[list[Future[None]]]:
        """Within the block, this thread's appends return once written; their fsyncs run in GroupSync.

        The caller must wait for every future in the yielded list, then pass each to `synced`, before it
        answers anyone. With LOOPENGT_GROUP_COMMIT=0 the list stays empty and appends fsync as usual.
        """
        batch: list[Future[None]] = []
        if not self._group_commit:
            yield batch
            return
        self._defer.batch = batch
        try:
            yield batch
        finally:
            self._defer.batch = None

    def defer_sync(self, run_id: str, fd: int, batch: list[Future[None]]) -> None:
        """Hand the run's fsync to GroupSync and add its future to the caller's batch."""
        if self._group is None:
            with self._mutex:
                if self._group is None:
                    hooks = self._faults.point is not None
                    self._group = GroupSync(
                        self.log_sync,
                        before=functools.partial(self._faults.fault, "group.before_sync") if hooks else None,
                        after=functools.partial(self._faults.fault, "append.after_fsync") if hooks else None,
                    )
        future = self._group.submit(run_id, fd)
        with self._unsynced_lock:
            self.unsynced[run_id] = future
        batch.append(future)

    def recent_seconds(self) -> float | None:
        """How long log fsyncs took lately (an exponential average; None before the first).

        None under fault injection too: a caller then hands every fsync it can to GroupSync, so the crash
        tests reach its kill points (group.before_sync) on a disk of any speed."""
        if self._faults.point is not None or not isinstance(self.log_sync, SyncTimer):
            return None
        return self.log_sync.recent

    def wait_synced(self, run_id: str) -> None:
        """Block until the run's deferred fsync (if any) is done; StoreIOError if it failed."""
        with self._unsynced_lock:
            future = self.unsynced.get(run_id)
        if future is not None:
            self.settle(run_id, future)

    def settle(self, run_id: str, future: Future[None]) -> None:
        """Wait for `future`; StoreIOError if the fsync failed (the lines may be lost)."""
        try:
            future.result()
        except OSError as exc:
            self._forget(run_id)
            raise io_error(exc, f"appending to run {run_id!r}") from exc
        finally:
            with self._unsynced_lock:
                if self.unsynced.get(run_id) is future:
                    del self.unsynced[run_id]

    def sync_pending(self, run_id: str) -> bool:
        """Whether the run's deferred fsync is still running (so taking its lock would wait)."""
        with self._unsynced_lock:
            future = self.unsynced.get(run_id)
        return future is not None and not future.done()

    def close(self) -> None:
        """Stop the GroupSync thread, if one was started."""
        if self._group is not None:
            self._group.close()
