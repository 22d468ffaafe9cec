"""`FileStore`: the default store, one directory per run under `<root>/runs/`, an append-only log.

Layout of `<root>/runs/<run_id>/`:

    spec.yaml              the frozen spec text; its mtime records when the run was created
    events.jsonl           one event a line: {"seq","type","at","data","crc"}, or {"seq","end",...} when
                           the line belongs to an append of several events (`logreader.py`)
    snapshot.json          the state after an event and where that event ends (`snapshots.py`)
    checkpoints/<id>.json  {"run_id","checkpoint_id","seq","label","created_at","state","crc"}
    lock                   flock(2) target that serialises writers across processes (`locking.py`)
    tasks.idx              derived, rebuildable: where each event naming a task id lies (`taskindex.py`)

Every record is sealed with a CRC-32 (`records.py`). A line counts only when it ends in a newline and
its checksum holds: a crash mid-append leaves a torn tail, which readers ignore and the next append
truncates under the lock. A damaged line anywhere else makes the run read-only (StoreCorrupt) until a
person restores it or runs `loopengt check --repair` (`repair.py`).

Durability: every append, snapshot, checkpoint and run creation is fsynced (files and the directories
that name them) before the call returns, so an acknowledged call survives a crash or power loss. The one
exception is an append inside `deferring()` (`deferred.py`): it returns after the write and the caller
answers only once its fsync is done. This class is the protocol's face; it composes the collaborators
above and keeps the append, the write the crash suite kills at most (`faults.py` names every crash
point; a run's creation is in `runfiles.py`, a snapshot's write in `snapshots.py`).

Only the errors of `loopengt_core.store.errors` leave this package; OSErrors become `StoreIOError`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

from loopengt_core.model.errors import InvalidArgument, StoreConflict
from loopengt_core.model.events import AnyEvent, Event
from loopengt_core.store import Checkpoint, LoadedRun, Repair, check_batch, check_id
from loopengt_core.store.files import fsio, snapshots
from loopengt_core.store.files.checkpoints import CheckpointFiles
from loopengt_core.store.files.deferred import DeferredSyncs
from loopengt_core.store.files.faults import FAULT_ENV, Faults
from loopengt_core.store.files.fsio import guard, io_error, write_all
from loopengt_core.store.files.listing import delete_run, list_runs, sweep_leftovers
from loopengt_core.store.files.locking import RunLocks
from loopengt_core.store.files.logreader import STRIDE, LogReader
from loopengt_core.store.files.reads import RunReads
from loopengt_core.store.files.records import (
    EVENTS,
    encode_batch,
    encode_event,
)
from loopengt_core.store.files.repair import repair_run
from loopengt_core.store.files.runcache import OpenLogs
from loopengt_core.store.files.runfiles import RunFiles, create_run_dir
from loopengt_core.store.files.taskindex import TaskIndex
from loopengt_core.store.groupsync import SyncTimer, counted_sync, group_commit_enabled

__all__ = ["FileStore"]


class FileStore:
    """`Store` over plain files; see the module docstring for the layout and the guarantees."""

    def __init__(
        self,
        root: str | os.PathLike[str] = ".loopengt",
        *,
        snapshot_every: int = 100,
        max_open_files: int | None = None,
    ) -> None:
        """`max_open_files`: append descriptors kept open (default LOOPENGT_OPEN_FILES, else 64); the
        least recently used is closed, so a store of any number of runs stays within a file limit."""
        if not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise InvalidArgument(f"snapshot_every must be a positive integer, not {snapshot_every!r}")
        self.root = Path(os.fspath(root))
        self.runs_dir = self.root / "runs"
        self.snapshot_every = snapshot_every
        self._mutex = threading.Lock()
        held: dict[str, int] = {}
        self._last_created_ns = 0
        self._faults = Faults(os.environ.get(FAULT_ENV))
        self._deferred = DeferredSyncs(
            SyncTimer(counted_sync(fsio.datasync)),
            group_commit_enabled(),
            self._faults,
            self._forget,
            self._mutex,
        )
        self._files = RunFiles(self.root, self._deferred)
        self._logs = OpenLogs(self._files, self._mutex, held, max_open_files)
        self._locks = RunLocks(self._files, self._deferred, held, self._mutex)
        # Counters for tests and diagnostics: how much of the logs this instance has parsed and read.
        self._reader = LogReader(self._files.path)
        self._reads = RunReads(self._files, self._logs, self._reader)
        self._tasks = TaskIndex(self._reader, self._files, self._locks, self._reads)
        self._checkpoints = CheckpointFiles(self._files, self._faults)

    @property
    def lines_parsed(self) -> int:
        """Log lines this instance has parsed (tests and diagnostics set it back to 0)."""
        return self._reader.lines_parsed

    @lines_parsed.setter
    def lines_parsed(self, value: int) -> None:
        self._reader.lines_parsed = value

    @property
    def bytes_read(self) -> int:
        """Bytes of logs and snapshots this instance has read (tests and diagnostics set it back to 0)."""
        return self._reader.bytes_read

    @bytes_read.setter
    def bytes_read(self, value: int) -> None:
        self._reader.bytes_read = value

    @property
    def _log_sync(self) -> Callable[[int], None]:
        """The fdatasync of log appends, direct or grouped (tests swap it before the first append)."""
        return self._deferred.log_sync

    @_log_sync.setter
    def _log_sync(self, sync: Callable[[int], None]) -> None:
        self._deferred.log_sync = sync

    def _forget(self, run_id: str) -> None:
        """Drop what we cached about a run after a failed write: the next call re-reads the tail."""
        self._logs.forget(run_id)

    def _created_ns(self) -> int:
        """A creation timestamp that strictly increases within this process (ordering `list_runs`)."""
        with self._mutex:
            self._last_created_ns = max(time.time_ns(), self._last_created_ns + 1)
            return self._last_created_ns

    # ----------------------------------------------------------------------------------- runs

    @guard("creating a run")
    def create_run(self, run_id: str, spec_text: str, events: Sequence[Event]) -> None:
        """Build the run in a temp directory and rename it into place, so it appears whole or not at all."""
        final = self._files.run_dir(run_id)
        if not isinstance(spec_text, str):
            raise InvalidArgument("spec_text must be a string")
        for index, event in enumerate(events, start=1):
            if not isinstance(event, Event) or event.seq != index:
                raise InvalidArgument(f"run {run_id!r}: a new run's events must have seqs 1, 2, 3, ...")
        log = b"".join(encode_event(e) for e in events)
        try:
            spec = spec_text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"spec text is not valid Unicode: {exc}") from exc
        create_run_dir(
            self._files, run_id, spec=spec, log=log, created_ns=self._created_ns(), faults=self._faults
        )
        self._logs.remember(
            run_id, os.stat(final / EVENTS), clean=len(log), last_seq=len(events), verified=len(log)
        )

    @guard("appending events")
    def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Append under the run's lock with one write and one fdatasync; O(1) in the log's length.

        All or nothing: several events carry their batch's `end`, so a crash part-way through leaves
        lines that readers drop and this method truncates before writing (see the module docstring).
        """
        check_id(run_id)
        if not events:
            return
        check_batch(run_id, events)
        lines = encode_batch(events)
        data = b"".join(lines)
        with self._locks.exclusive(run_id):
            fd = self._logs.append_fd(run_id)
            cache = self._logs.cache(run_id, os.fstat(fd))
            if cache is None or cache.verified == 0:  # first write here: never after a damaged line
                self._reads.checked_read(run_id, self._files.run_dir(run_id), fd)
            _, clean, last = self._reads.state(run_id, fd)
            if events[0].seq != last + 1:
                raise StoreConflict(
                    f"run {run_id!r}: append starts at seq {events[0].seq} but the log ends at seq {last}; "
                    "another writer got there first: reload the run and decide again",
                    run_id=run_id,
                )
            try:
                size = os.fstat(fd).st_size
                if clean < size:
                    os.ftruncate(fd, clean)  # drop a torn tail or an unfinished batch before writing
                if self._faults.point is not None:
                    self._faults.fail("append.enospc", self._files.path(run_id, EVENTS))
                    self._faults.fault("append.before_write")
                    if self._faults.hit("append.mid_write"):
                        os.write(fd, data[: len(data) // 2])
                        self._faults.die()
                write_all(fd, data)
                if self._faults.point is not None:
                    self._faults.fault("append.after_write")
                batch = self._deferred.batch()
                if batch is None:
                    self._log_sync(fd)
                    if self._faults.point is not None:
                        self._faults.fault("append.after_fsync")
                else:
                    self._deferred.defer_sync(run_id, fd, batch)
                st = os.fstat(fd)
            except OSError as exc:
                self._forget(run_id)
                raise io_error(exc, f"appending to run {run_id!r}") from exc
            if st.st_size != clean + len(data):
                self._forget(run_id)  # someone wrote without the lock; re-read next time
                return
            points, offset = [], clean
            for event, line in zip(events, lines, strict=True):
                offset += len(line)
                if event.seq % STRIDE == 0:
                    points.append((event.seq, offset))
            self._logs.remember(
                run_id, st, clean=st.st_size, last_seq=events[-1].seq, points=points, verified=st.st_size
            )

    # ----------------------------------------------------------------------------------- loading, snapshots

    @guard("loading a run")
    def load(self, run_id: str) -> LoadedRun:
        """Spec + snapshot + the events after it: seeks to the snapshot's offset instead of scanning."""
        return self._reads.load(run_id)

    @guard("repairing a run")
    def repair(self, run_id: str) -> Repair | None:
        """Cut the log after the last whole batch before its first damaged line; None if nothing is damaged.

        Only at a person's request (`loopengt check --repair`); see `repair_run`.
        """
        return repair_run(run_id, self._files, self._reader, self._locks, self._forget)

    @guard("saving a snapshot")
    def save_snapshot(self, run_id: str, seq: int, state: dict[str, Any]) -> None:
        """Write a temp file, fsync, rename over snapshot.json, fsync the directory."""
        run_dir = self._files.run_dir(run_id)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InvalidArgument(f"snapshot seq must be an integer >= 0, not {seq!r}")
        if not isinstance(state, dict):
            raise InvalidArgument("snapshot state must be a JSON object")
        fd = self._files.open_events(run_id)
        try:
            offset = self._reads.offset_after(run_id, fd, seq)
            st = os.fstat(fd)
            prefix_crc = snapshots.prefix_crc(self._reader, run_id, fd, self._logs.cache(run_id, st), offset)
        finally:
            os.close(fd)
        snapshots.write_snapshot(
            run_dir, seq, offset=offset, prefix_crc=prefix_crc, state=state, faults=self._faults
        )
        self._logs.remember(run_id, st, points=[(seq, offset)], prefix=(offset, prefix_crc))
        self._tasks.update_quietly(run_id)

    # ----------------------------------------------------------------------------------- group commit

    def deferring(self) -> AbstractContextManager[list[Future[None]]]:
        """Within the block, this thread's appends return once written; their fsyncs run in GroupSync.

        The caller must wait for every future in the yielded list, then pass each to `synced`, before it
        answers anyone. With LOOPENGT_GROUP_COMMIT=0 the list stays empty and appends fsync as usual.
        """
        return self._deferred.deferring()

    def synced(self, run_id: str, future: Future[None]) -> None:
        """After a deferred append's fsync is done: StoreIOError if it failed (the lines may be lost)."""
        self._deferred.settle(run_id, future)

    def recent_sync_seconds(self) -> float | None:
        """How long this store's log fsyncs took lately (None before the first, or under fault injection)."""
        return self._deferred.recent_seconds()

    # ----------------------------------------------------------------------------------- reads

    @guard("reading events")
    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """Events with seq > after, starting the read from the nearest remembered offset."""
        return self._reads.events(run_id, after=after, limit=limit)

    @guard("reading the last seq")
    def last_seq(self, run_id: str) -> int:
        """From the cache if the file did not change, else from its last line."""
        return self._reads.last_seq(run_id)

    @guard("reading a task's events")
    def task_events(self, run_id: str, task_id: str) -> list[AnyEvent]:
        """The events that name `task_id`, in order: read through `tasks.idx`, not the whole log."""
        return self._tasks.task_events(run_id, task_id)

    # ----------------------------------------------------------------------------------- checkpoints

    @guard("saving a checkpoint")
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Temp file + fsync + link(2): the link fails if the id exists, so two savers cannot both win."""
        self._checkpoints.save(checkpoint)

    @guard("discarding a checkpoint")
    def discard_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Unlink the checkpoint's file (durably); nothing if there is none."""
        self._checkpoints.discard(run_id, checkpoint_id)

    @guard("reading a checkpoint")
    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """The checkpoint `checkpoint_id` of the run; NotFound names the run's checkpoints."""
        return self._checkpoints.get(run_id, checkpoint_id)

    @guard("listing checkpoints")
    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Oldest first: by seq, then creation time, then id."""
        return self._checkpoints.list(run_id)

    # ----------------------------------------------------------------------------------- listing

    @guard("listing runs")
    def list_runs(self) -> list[str]:
        """Newest first by creation time (spec.yaml's mtime, set at creation), then by id."""
        return list_runs(self.runs_dir)

    @guard("checking a run")
    def exists(self, run_id: str) -> bool:
        """Whether the store holds a run with this id (its log file exists)."""
        return (self._files.run_dir(run_id) / EVENTS).is_file()

    @guard("deleting a run")
    def delete_run(self, run_id: str) -> None:
        """Rename the run directory to a temp name (atomic, durable), then remove it at leisure."""
        delete_run(self._files, run_id, self._forget)

    @guard("sweeping leftovers")
    def sweep_leftovers(
        self, *, older_than_seconds: float = 3600.0, dry_run: bool = False
    ) -> tuple[int, int]:
        """Remove temp files and directories that crashed writers left behind; returns (entries, bytes).

        Only entries untouched for `older_than_seconds` go, so a writer still at work keeps its own.
        """
        return sweep_leftovers(self.runs_dir, older_than_seconds=older_than_seconds, dry_run=dry_run)

    @guard("reading a run's version")
    def version(self, run_id: str) -> str:
        """Size and mtime of the log: the size grows with every append, so watchers can poll this."""
        try:
            st = os.stat(self._files.run_dir(run_id) / EVENTS)
        except (FileNotFoundError, NotADirectoryError):
            raise self._files.not_found(run_id) from None
        return f"{st.st_size}:{st.st_mtime_ns}"

    # ----------------------------------------------------------------------------------- locking

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """flock(LOCK_EX) on the run's lock file, plus a per-run thread lock for this process.

        Blocks until free. Not re-entrant; `append` inside the block sees it is held and does not relock.
        """
        return self._locks.lock(run_id)

    def try_lock(self, run_id: str) -> AbstractContextManager[None]:
        """`lock` that raises LockBusy instead of waiting: a transition here is a local append+fsync,
        quick enough for an event loop as long as it never waits for another writer (async_submit.quick)."""
        return self._locks.try_lock(run_id)

    def close(self) -> None:
        """Close cached append fds and forget caches; the store stays usable (it reopens on demand)."""
        self._deferred.close()
        for fd in self._logs.clear():
            with suppress(OSError):
                os.close(fd)
