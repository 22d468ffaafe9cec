"""The default store: one directory per run under `<root>/runs/`, an append-only checksummed event log.

Layout of `<root>/runs/<run_id>/`:

    spec.yaml              the frozen spec text; its mtime records when the run was created
    events.jsonl           one event a line: {"seq","type","at","data","crc"}, or {"seq","end",...} when
                           the line belongs to an append of several events (see "Batches" below)
    snapshot.json          {"seq","offset","prefix_crc","state","crc"}: state after event `seq`, which
                           ends at byte `offset` of events.jsonl, so loading seeks instead of scanning;
                           `prefix_crc` is the CRC-32 of the log's bytes before `offset`
    checkpoints/<id>.json  {"run_id","checkpoint_id","seq","label","created_at","state","crc"}
    lock                   flock(2) target that serialises writers across processes
    tasks.idx              derived, rebuildable: where each event naming a task id lies in events.jsonl
                           (see "Task index" below)

`crc` is the zlib CRC-32 (8 lowercase hex digits) of the same JSON object serialised compactly without
the `crc` key. A line counts only when it ends in a newline and its checksum holds: a crash mid-append
leaves a torn tail, which readers ignore and the next append truncates under the lock.

Batches: one `append` is one transition of the engine, so it must survive whole or not at all. When an
append holds more than one event, every line of it carries `"end"`: the seq of the append's last event
(covered by the checksum, removed before the line becomes an `Event`). A line without `end` is a batch
of one, so logs written before the marker existed still load, and single-event appends stay small.
Readers count a batch only once its last line (`seq == end`) is present: if the last good lines of the
log are a batch that stops short of its `end` (a crash part-way through the write), they are dropped
exactly like a torn tail, `last_seq` is the end of the batch before, and the next append truncates them
under the lock. Only the final batch can be unfinished, because a batch is written by one append that
holds the lock and the file only grows; a batch broken off by another line is corruption. `create_run`
needs no marker: the run directory appears whole by rename. A snapshot or a remembered offset may point
inside a complete batch; a read that starts there takes the batch's `end` from its first line.

Corruption: a bad line (checksum, JSON, seq gap) anywhere but at the very end is damage, never a torn
write: it raises StoreCorrupt naming the file and the line, and the run takes no more appends. Lines
behind the snapshot are not parsed on load, so the first load (or append) of a run in a process checks
them in bulk against the snapshot's `prefix_crc` (one sequential read and a CRC, no parsing); only on a
mismatch does it scan the lines to name the bad one. Damage done while a process holds a run is found by
the next process to load it, or by `loopengt check`.
`repair` (`loopengt check --repair`, only at a person's request) cuts the log after the last good batch,
keeping the original beside it. A run directory or log that is a symlink is refused as foreign: the
store never follows a link out of itself.

Durability: every append, snapshot, checkpoint and run creation is fsynced (files and the directories
that name them) before the call returns, so an acknowledged call survives a crash or power loss. The one
exception is an append inside `deferring()` (the MCP server's event loop): it returns after the write, its
fsync runs in `groupsync.GroupSync`, and the caller answers only once that fsync is done. Until then the
run's lines are not durable, so nothing in this process reads them: opening the run's log or taking its
lock first waits for the fsync (`try_lock` says busy instead), and so does a snapshot.

Task index: `task_events(run_id, task_id)` answers a late or repeated submission without reading the
log. `tasks.idx` holds a line `<task id as JSON>\t<seq>\t<start>\t<end>` (byte range of the event's
line in events.jsonl) for every event whose data has a `task_id`, and after each batch of those a marker
`#\t<seq>\t<offset>\t<length>\t<crc>`: the log is indexed up to event `seq`, which ends at `offset`, and the
`length` bytes of entries before the marker have that CRC-32. It is brought up to date under the run's
lock when a snapshot is saved and before a lookup (only the events after the last marker are read), one
write and one fdatasync each time, so only the last chunk can be torn, and its CRC tells; lines after the
last marker are a torn write and are cut off. A marker that does not match the log (a
repaired log) or cannot be read, or a missing file, makes the lookup rebuild the index from the log.
A lookup reads the index (a few dozen bytes per task event) and then only the events it names.

Only the errors of `loopengt_core.store.errors` leave this module; OSErrors become `StoreIOError`.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import functools
import json
import os
import shutil
import signal
import stat
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from loopengt_core.bounded import CACHED_RUNS_ENV, LRU, OPEN_FILES_ENV, env_count
from loopengt_core.errors import InvalidArgument, LoopengtError, NotFound, StoreConflict, StoreCorrupt
from loopengt_core.events import AnyEvent, Event, event_from_record, to_record
from loopengt_core.store import (
    ID_PATTERN,
    Checkpoint,
    LoadedRun,
    LockBusy,
    Repair,
    StoreIOError,
    check_batch,
    check_checkpoint,
    check_id,
)
from loopengt_core.store.groupsync import GroupSync, SyncTimer, counted_sync, group_commit_enabled

# Repair and StoreIOError live with the protocol (loopengt_core.store); re-exported for older imports.
__all__ = ["FAIL_POINTS", "FAULT_ENV", "FAULT_POINTS", "FileStore", "LogCorrupt", "Repair", "StoreIOError"]

FAULT_ENV = "LOOPENGT_FAULT"
FAULT_POINTS = frozenset(
    {
        "append.before_write",
        "append.mid_write",
        "append.after_write",
        "append.after_fsync",
        "group.before_sync",
        "snapshot.after_temp",
        "snapshot.after_rename",
        "create.before_rename",
    }
)

# Points where a write fails with ENOSPC (a full disk) instead of the process dying.
FAIL_POINTS = frozenset({"append.enospc", "checkpoint.enospc"})

EVENTS = "events.jsonl"
SPEC = "spec.yaml"
SNAPSHOT = "snapshot.json"
CHECKPOINTS = "checkpoints"
LOCK = "lock"
TASKS = "tasks.idx"
TMP_PREFIX = ".tmp-"

_CRC_MARK = b',"crc":"'
_FIRST_CHUNK = 1 << 16  # forward reads start small (a `limit`ed read stops early) and double
_CHUNK = 1 << 20
_BACK_BLOCK = 8192  # first backward read when looking for the start of the last line
_STRIDE = 256  # remember the byte offset of every 256th seq, so `events(after=...)` seeks near its target
_MAX_POINTS = 4096
_NO_LIMIT = 1 << 62
_INDEX_PAGE = 1000  # events read per step while bringing a task index up to date (bounds memory)

_P = ParamSpec("_P")
_R = TypeVar("_R")

_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class _BadRecord(Exception):
    """A line or file whose checksum or JSON does not hold; the reason ends up in StoreCorrupt."""


class LogCorrupt(StoreCorrupt):
    """A damaged line in a run's log; `good_end`/`good_seq` mark the end of the last whole batch before it."""

    def __init__(
        self, message: str, *, run_id: str, line: int, reason: str, good_end: int, good_seq: int
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.line, self.reason, self.good_end, self.good_seq = line, reason, good_end, good_seq


def _seal(obj: dict[str, Any]) -> bytes:
    """Compact JSON of `obj` with its CRC appended as the last key, newline-terminated."""
    try:
        payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError
        raise InvalidArgument(f"cannot store a value that is not plain JSON: {exc}") from exc
    return payload[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(payload)


def _unseal(raw: bytes) -> dict[str, Any]:
    """Verify and parse one sealed record (without its trailing newline)."""
    cut = raw.rfind(_CRC_MARK)
    if cut < 0:
        raise _BadRecord("no checksum (torn or not written by loopengt)")
    tail = raw[cut + len(_CRC_MARK) :]
    if len(tail) != 10 or tail[8:] != b'"}':
        raise _BadRecord("malformed checksum field")
    payload = raw[:cut] + b"}"
    if tail[:8] != b"%08x" % zlib.crc32(payload):
        raise _BadRecord("checksum mismatch")
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise _BadRecord(f"invalid JSON under a valid checksum: {exc}") from exc
    if not isinstance(obj, dict):
        raise _BadRecord("not a JSON object")
    return obj


def _seq_of(obj: dict[str, Any]) -> int:
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise _BadRecord("seq is not an integer")
    return seq


def _end_of(obj: dict[str, Any], seq: int) -> int:
    """Remove a line's `end` marker and return it: the seq of its batch's last event (`seq` if unmarked)."""
    end = obj.pop("end", None)
    if end is None:
        return seq
    if not isinstance(end, int) or isinstance(end, bool) or end < seq:
        raise _BadRecord("end is not an integer >= seq")
    return end


def _encode_event(event: Event, end: int | None = None) -> bytes:
    return _seal(to_record(event, end=end))


def _encode_batch(events: Sequence[Event]) -> list[bytes]:
    """The lines of one append; several events all carry `end`, so a cut-short batch is recognisable."""
    end = events[-1].seq if len(events) > 1 else None
    return [_encode_event(e, end) for e in events]


def _write_all(fd: int, data: bytes) -> None:
    """One write for the whole buffer; loops only on a short write (signals, nearly full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_new_file(path: Path, data: bytes, *, mtime_ns: int | None = None) -> None:
    """Create `path` (must not exist), write it fully and flush it (and a given mtime) to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, data)
        if mtime_ns is None:
            _datasync(fd)
        else:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
            os.fsync(fd)  # fdatasync may skip the mtime, which here is data
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make renames and new names in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (symlinks not followed; vanished ones: 0)."""
    paths = [path]
    if path.is_dir() and not path.is_symlink():
        paths = [Path(folder, name) for folder, dirs, files in os.walk(path) for name in [*files, *dirs]]
    total = 0
    for each in paths:
        with contextlib.suppress(FileNotFoundError):
            st = each.lstat()
            total += 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    return total


def _io_error(exc: OSError, what: str) -> StoreIOError:
    where = f" {exc.filename}:" if exc.filename else ""
    return StoreIOError(f"file store: {what} failed:{where} {exc.strerror or exc}")


def _guard(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Safety net: turn any OSError that escaped the specific handlers into a StoreIOError."""

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                raise _io_error(exc, what) from exc

        return wrapper

    return decorate


@dataclass
class _RunCache:
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
        if seq in self.points:
            return
        self.points[seq] = offset
        bisect.insort(self.keys, seq)
        if len(self.keys) > _MAX_POINTS:  # thin out evenly, keeping 0 and the newest point
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


@dataclass
class _Scan:
    events: list[AnyEvent]
    end: int  # offset just after the last complete batch consumed
    last_seq: int  # the seq that ends that batch
    stopped: bool  # ended early because `limit` was reached
    points: list[tuple[int, int]]
    first_end: int  # offset just after the first returned event (`end` if none)
    ends: list[int] = field(default_factory=list)  # offset just after each returned event's line


@dataclass(frozen=True)
class _Snapshot:
    seq: int
    offset: int
    state: dict[str, Any]
    prefix_crc: int | None = None  # None: written before snapshots carried it


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
        self._runs_prefix = os.path.join(self.runs_dir, "")  # str paths on the hot path: pathlib costs µs
        self.snapshot_every = snapshot_every
        # Counters for tests and diagnostics: how much of the logs this instance has parsed and read.
        self.lines_parsed = 0
        self.bytes_read = 0
        self._mutex = threading.Lock()
        self._held: dict[str, int] = {}
        # What is known of each log (offsets, last seq): small, so many more runs than open files.
        self._caches: LRU[str, _RunCache] = LRU(8 * env_count(CACHED_RUNS_ENV, 64))
        self._fds: LRU[str, int] = LRU(
            max_open_files or env_count(OPEN_FILES_ENV, 64),
            evict=lambda _, fd: os.close(fd),
            busy=self._held.__contains__,  # its run's lock holder may be writing to it right now
        )
        self._thread_locks: dict[str, threading.Lock] = {}
        self._last_created_ns = 0
        self._fault_point: str | None = None
        self._fault_nth = 1
        self._fault_hits = 0
        self._parse_fault(os.environ.get(FAULT_ENV))
        self._log_sync = SyncTimer(counted_sync(_datasync))
        self._group_commit = group_commit_enabled()
        self._group: GroupSync | None = None
        self._defer = threading.local()  # .batch: the futures of this thread's deferred appends
        self._unsynced: dict[str, Future[None]] = {}  # run id -> the fsync its last deferred append awaits
        self._unsynced_lock = threading.Lock()  # not _mutex: _own_dir, which waits, runs under _mutex too

    # ----------------------------------------------------------------- fault injection (crash tests)

    def _parse_fault(self, value: str | None) -> None:
        if not value:
            return
        point, _, nth = value.partition(":")
        if point not in FAULT_POINTS | FAIL_POINTS or (nth and not (nth.isdigit() and int(nth) >= 1)):
            raise InvalidArgument(
                f"{FAULT_ENV}={value!r}: use POINT or POINT:N with N >= 1, POINT one of "
                + ", ".join(sorted(FAULT_POINTS | FAIL_POINTS))
            )
        self._fault_point = point
        self._fault_nth = int(nth) if nth else 1

    def _fault_hit(self, point: str) -> bool:
        """Count a pass through `point`; True when this pass is the one to crash at."""
        if point != self._fault_point:
            return False
        self._fault_hits += 1
        return self._fault_hits == self._fault_nth

    @staticmethod
    def _die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def _fault(self, point: str) -> None:
        if self._fault_hit(point):
            self._die()

    def _fail(self, point: str, path: Path | str) -> None:
        """At a FAIL_POINTS point: the write fails as on a full disk, and the process lives on."""
        if self._fault_point is not None and self._fault_hit(point):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    # ----------------------------------------------------------------------------------- helpers

    def _run_dir(self, run_id: str) -> Path:
        return self.runs_dir / check_id(run_id)

    def _path(self, run_id: str, name: str) -> str:
        """A file of the run as a plain string (the per-step calls skip pathlib)."""
        return f"{self._runs_prefix}{check_id(run_id)}/{name}"

    def _not_found(self, run_id: str) -> NotFound:
        return NotFound(f"no run {run_id!r} in the store at {self.root}", run_id=run_id)

    def _foreign(self, run_id: str, path: str) -> StoreCorrupt:
        return StoreCorrupt(
            f"run {run_id!r}: {path} is a symbolic link, and the store does not follow links out of "
            f"{self.runs_dir}; the run is refused as foreign: move its files into the store in place of "
            "the link, or remove the link",
            run_id=run_id,
        )

    def _own_dir(self, run_id: str) -> None:
        """Refuse a run directory that is a symlink (one lstat); NotFound if there is none.

        Every use of a run's files passes here, so this is also where a deferred fsync is waited for.
        """
        path = f"{self._runs_prefix}{check_id(run_id)}"
        if self._unsynced:
            self._wait_synced(run_id)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(run_id) from None
        if stat.S_ISLNK(mode):
            raise self._foreign(run_id, path)

    def _open_log(self, run_id: str, flags: int) -> int:
        """An fd on the run's own log (neither it nor its directory a symlink); NotFound if there is none."""
        self._own_dir(run_id)
        path = self._path(run_id, EVENTS)
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(run_id) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._foreign(run_id, path) from None
            raise

    def _open_events(self, run_id: str) -> int:
        """A read-only fd on the run's log; NotFound if the run does not exist."""
        return self._open_log(run_id, os.O_RDONLY)

    def _append_fd(self, run_id: str) -> int:
        """The cached O_APPEND fd of the run's log, reopened if the file was replaced."""
        path = self._path(run_id, EVENTS)
        self._own_dir(run_id)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(run_id) from None
        with self._mutex:
            fd = self._fds.get(run_id)
            if fd is not None and os.fstat(fd).st_ino == st.st_ino:
                return fd
            if fd is not None:
                os.close(fd)
                self._fds.pop(run_id)
            fd = self._open_log(run_id, os.O_RDWR | os.O_APPEND)
            self._fds[run_id] = fd
            return fd

    def _forget(self, run_id: str) -> None:
        """Drop what we cached about a run after a failed write: the next call re-reads the tail."""
        with self._mutex:
            self._caches.pop(run_id)
            fd = self._fds.pop(run_id)
        if fd is not None:
            with suppress(OSError):
                os.close(fd)

    def _cache(self, run_id: str, st: os.stat_result) -> _RunCache | None:
        with self._mutex:
            cache = self._caches.get(run_id)
            if cache is not None and (cache.ino != st.st_ino or st.st_size < cache.clean):
                self._caches.pop(run_id)  # the file was replaced or rewritten: nothing we knew holds
                cache = None
            return cache

    def _remember(
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
                cache = self._caches[run_id] = _RunCache(st.st_ino, st.st_size, clean, last_seq)
            elif clean is not None and last_seq is not None and last_seq >= cache.last_seq:
                cache.size, cache.clean, cache.last_seq = st.st_size, clean, last_seq
            for seq, offset in points:
                cache.add_point(seq, offset)
            cache.verified = max(cache.verified, verified)
            if prefix is not None and prefix[0] >= cache.prefix[0]:
                cache.prefix = prefix

    def _pread(self, fd: int, length: int, offset: int) -> bytes:
        data = os.pread(fd, length, offset)
        self.bytes_read += len(data)
        return data

    def _rfind_newline(self, fd: int, end: int) -> int:
        """Offset of the last b"\\n" before `end`, or -1; reads backwards in growing blocks."""
        pos, block = end, _BACK_BLOCK
        while pos > 0:
            start = max(0, pos - block)
            found = self._pread(fd, pos - start, start).rfind(b"\n")
            if found >= 0:
                return start + found
            pos, block = start, min(block * 2, _CHUNK)
        return -1

    def _lines_back(self, fd: int, end: int, count: int) -> int:
        """Offset where the last `count` lines before `end` (a line boundary) start; 0 if fewer."""
        search_end, block = end - 1, _BACK_BLOCK
        while search_end > 0:
            start = max(0, search_end - block)
            chunk = self._pread(fd, search_end - start, start)
            found = len(chunk)
            while (found := chunk.rfind(b"\n", 0, found)) >= 0:
                count -= 1
                if count == 0:
                    return start + found + 1
            search_end, block = start, min(block * 2, _CHUNK)
        return 0

    def _start_for(self, run_id: str, fd: int, st: os.stat_result, after: int) -> tuple[int, int]:
        """Where to start reading for events after `after`: (seq, offset just after it), seq <= after.

        The nearer of a remembered point before `after` (reading forwards) and the remembered end of the
        log (counting lines backwards), so following a log's end never reads the whole file.
        """
        cache = self._cache(run_id, st)
        if cache is None:
            return 0, 0
        seq, offset = cache.best_point(after)
        behind = cache.last_seq - after
        if 0 < behind < after - seq:
            return after, self._lines_back(fd, cache.clean, behind)
        return seq, offset

    def _line_ending_at(self, fd: int, end: int) -> dict[str, Any]:
        """Parse the line whose newline is the byte at `end - 1`."""
        start = self._rfind_newline(fd, end - 1) + 1
        self.lines_parsed += 1
        return _unseal(self._pread(fd, end - 1 - start, start))

    def _scan(
        self, run_id: str, fd: int, start: int, prev_seq: int, size: int, *, after: int, limit: int | None
    ) -> _Scan:
        """Read lines from `start` (just after event `prev_seq`) up to `size`, checking every one.

        Collects events with seq > after, at most `limit`, and stops only between batches. A bad or
        unterminated line with nothing after it is a torn tail and ends the scan; a bad line followed by
        more data is corruption. A batch still short of its `end` when the lines run out is dropped with
        its events and offsets, so `end` and `last_seq` always describe whole batches.
        """
        events: list[AnyEvent] = []
        points: list[tuple[int, int]] = []
        pending: list[tuple[int, int]] = []  # points inside the open batch, kept once it completes
        want = _NO_LIMIT if limit is None else limit
        buf, i, pos, block = b"", 0, start, _FIRST_CHUNK
        end, seq = start, prev_seq  # just after the last complete batch
        cur = batch_end = prev_seq  # the last line read and the seq ending its batch (cur < batch_end: open)
        kept, first_end = 0, start
        ends: list[int] = []
        while cur < batch_end or len(events) < want:
            nl = buf.find(b"\n", i)
            if nl < 0:
                chunk = self._pread(fd, min(block, size - pos), pos) if pos < size else b""
                if not chunk:
                    break  # end of file; anything left in buf is an unterminated (torn) tail
                buf, i, pos, block = buf[i:] + chunk, 0, pos + len(chunk), min(block * 2, _CHUNK)
                continue
            raw, line_end = buf[i:nl], pos - (len(buf) - nl - 1)
            i = nl + 1
            line_no = cur + 1  # every earlier line held seq == its line number
            self.lines_parsed += 1
            try:
                obj = _unseal(raw)
                got = _seq_of(obj)
                ends_at = _end_of(obj, got)
                event = event_from_record(obj) if got > after and len(events) < want else None
            except (_BadRecord, ValidationError) as exc:
                if i >= len(buf) and pos >= size:
                    break  # the last line: a torn write, dropped
                reason = str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)
                raise self._corrupt(
                    run_id, line_no, f"{reason}; not the last line, so not a torn write", end, seq
                ) from None
            if got != cur + 1:
                raise self._corrupt(
                    run_id,
                    line_no,
                    f"seq {got} where {cur + 1} belongs: a line missing or repeated",
                    end,
                    seq,
                )
            if cur < batch_end and ends_at != batch_end:
                raise self._corrupt(
                    run_id,
                    line_no,
                    f"it ends its batch at seq {ends_at}, but the batch it continues ends at seq "
                    f"{batch_end}: an append broken off mid-log",
                    end,
                    seq,
                )
            cur, batch_end = got, ends_at
            if got % _STRIDE == 0:
                pending.append((got, line_end))
            if event is not None:
                if not events:
                    first_end = line_end
                events.append(event)
                ends.append(line_end)
            if got == batch_end:  # the batch is complete: it counts
                seq, end, kept = got, line_end, len(events)
                points.extend(pending)
                pending.clear()
        del events[kept:]  # an unfinished last batch: dropped like a torn tail
        del ends[kept:]
        return _Scan(events, end, seq, len(events) >= want, points, first_end if events else end, ends)

    def _corrupt(self, run_id: str, line: int, reason: str, good_end: int, good_seq: int) -> LogCorrupt:
        return LogCorrupt(
            f"run {run_id!r} is corrupt: {self._path(run_id, EVENTS)} line {line} is damaged ({reason}). "
            f"The run is read-only: nothing is written after a damaged line. Restore the file from a "
            f"backup, or keep the events before that line with `loopengt check --repair {run_id}`",
            run_id=run_id,
            line=line,
            reason=reason,
            good_end=good_end,
            good_seq=good_seq,
        )

    def _tail(self, run_id: str, fd: int, size: int, cache: _RunCache | None) -> tuple[int, int]:
        """(clean end offset, last seq) read from the end of the file: O(1) in the log's length.

        If the last terminated line belongs to an unfinished batch, it walks back over that batch's lines
        to the end of the batch before. Only when a line it reads fails its checksum (or the batch walk
        meets something odd) does it fall back to a forward scan, so the answer (and any corruption
        report) is exactly what `load` would see.
        """
        if size == 0:
            return 0, 0
        nl = self._rfind_newline(fd, size)
        end = nl + 1  # anything after the last newline is a torn fragment
        if end == 0:
            return 0, 0
        try:
            obj = self._line_ending_at(fd, end)
            seq = _seq_of(obj)
            batch_end = _end_of(obj, seq)
            if batch_end == seq:
                return end, seq
            return self._before_batch(fd, end, seq, batch_end)
        except _BadRecord:
            prev_seq, start = cache.best_point(_NO_LIMIT) if cache is not None else (0, 0)
            if start > size:
                prev_seq, start = 0, 0
            scan = self._scan(run_id, fd, start, prev_seq, size, after=_NO_LIMIT, limit=None)
            return scan.end, scan.last_seq

    def _before_batch(self, fd: int, end: int, seq: int, batch_end: int) -> tuple[int, int]:
        """(offset, seq) just before the unfinished batch whose line `seq` ends at `end`.

        Walks back over that batch's lines only (one append's worth); anything unexpected raises
        _BadRecord so that `_tail` falls back to a forward scan, which names the damage.
        """
        while True:
            start = self._rfind_newline(fd, end - 1) + 1
            if start == 0:
                if seq != 1:
                    raise _BadRecord("the log does not start at seq 1")
                return 0, 0
            obj = self._line_ending_at(fd, start)
            prev = _seq_of(obj)
            prev_end = _end_of(obj, prev)
            if prev != seq - 1:
                raise _BadRecord("seqs are not consecutive")
            if prev_end != batch_end:
                if prev_end != prev:
                    raise _BadRecord("a batch broken off mid-log")
                return start, prev
            end, seq = start, prev

    def _state(self, run_id: str, fd: int) -> tuple[os.stat_result, int, int]:
        """(stat, clean end, last seq) of an open log, from the cache when the file is unchanged."""
        st = os.fstat(fd)
        cache = self._cache(run_id, st)
        if cache is not None and cache.unchanged(st):
            return st, cache.clean, cache.last_seq
        clean, last = self._tail(run_id, fd, st.st_size, cache)
        self._remember(run_id, st, clean=clean, last_seq=last)
        return st, clean, last

    def _thread_lock(self, run_id: str) -> threading.Lock:
        with self._mutex:
            return self._thread_locks.setdefault(run_id, threading.Lock())

    @contextmanager
    def _exclusive(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock unless this thread already holds it through `lock()`."""
        if self._held.get(run_id) == threading.get_ident():
            yield
        else:
            with self.lock(run_id):
                yield

    def _created_ns(self) -> int:
        """A creation timestamp that strictly increases within this process (ordering `list_runs`)."""
        with self._mutex:
            self._last_created_ns = max(time.time_ns(), self._last_created_ns + 1)
            return self._last_created_ns

    # ----------------------------------------------------------------------------------- runs

    def _fill_run_dir(self, tmp: Path, spec: bytes, log: bytes) -> None:
        """Write every file of a new run into `tmp` and make them all durable."""
        _write_new_file(tmp / SPEC, spec, mtime_ns=self._created_ns())
        _write_new_file(tmp / EVENTS, log)
        _write_new_file(tmp / LOCK, b"")
        (tmp / CHECKPOINTS).mkdir()
        _fsync_dir(tmp)

    @_guard("creating a run")
    def create_run(self, run_id: str, spec_text: str, events: Sequence[Event]) -> None:
        """Build the run in a temp directory and rename it into place, so it appears whole or not at all."""
        final = self._run_dir(run_id)
        if not isinstance(spec_text, str):
            raise InvalidArgument("spec_text must be a string")
        for index, event in enumerate(events, start=1):
            if not isinstance(event, Event) or event.seq != index:
                raise InvalidArgument(f"run {run_id!r}: a new run's events must have seqs 1, 2, 3, ...")
        log = b"".join(_encode_event(e) for e in events)
        try:
            spec = spec_text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"spec text is not valid Unicode: {exc}") from exc
        if final.exists():
            raise StoreConflict(f"run {run_id!r} already exists", run_id=run_id)
        try:
            if not self.runs_dir.is_dir():
                self.runs_dir.mkdir(parents=True, exist_ok=True)
                _fsync_dir(self.root)
            tmp = self.runs_dir / f"{TMP_PREFIX}{run_id}-{uuid.uuid4().hex}"
            tmp.mkdir()
        except OSError as exc:
            raise _io_error(exc, f"creating run {run_id!r}") from exc
        try:
            self._fill_run_dir(tmp, spec, log)
            if self._fault_point is not None:
                self._fault("create.before_rename")
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if final.exists():
                    raise StoreConflict(f"run {run_id!r} already exists", run_id=run_id) from None
                raise _io_error(exc, f"creating run {run_id!r}") from exc
            _fsync_dir(self.runs_dir)
        except OSError as exc:
            raise _io_error(exc, f"creating run {run_id!r}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._remember(
            run_id, os.stat(final / EVENTS), clean=len(log), last_seq=len(events), verified=len(log)
        )

    @_guard("appending events")
    def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Append under the run's lock with one write and one fdatasync; O(1) in the log's length.

        All or nothing: several events carry their batch's `end`, so a crash part-way through leaves
        lines that readers drop and this method truncates before writing (see the module docstring).
        """
        check_id(run_id)
        if not events:
            return
        check_batch(run_id, events)
        lines = _encode_batch(events)
        data = b"".join(lines)
        with self._exclusive(run_id):
            fd = self._append_fd(run_id)
            cache = self._cache(run_id, os.fstat(fd))
            if cache is None or cache.verified == 0:  # first write here: never after a damaged line
                self._checked_read(run_id, self._run_dir(run_id), fd)
            _, clean, last = self._state(run_id, fd)
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
                if self._fault_point is not None:
                    self._fail("append.enospc", self._path(run_id, EVENTS))
                    self._fault("append.before_write")
                    if self._fault_hit("append.mid_write"):
                        os.write(fd, data[: len(data) // 2])
                        self._die()
                _write_all(fd, data)
                if self._fault_point is not None:
                    self._fault("append.after_write")
                batch: list[Future[None]] | None = getattr(self._defer, "batch", None)
                if batch is None:
                    self._log_sync(fd)
                    if self._fault_point is not None:
                        self._fault("append.after_fsync")
                else:
                    self._defer_sync(run_id, fd, batch)
                st = os.fstat(fd)
            except OSError as exc:
                self._forget(run_id)
                raise _io_error(exc, f"appending to run {run_id!r}") from exc
            if st.st_size != clean + len(data):
                self._forget(run_id)  # someone wrote without the lock; re-read next time
                return
            points, offset = [], clean
            for event, line in zip(events, lines, strict=True):
                offset += len(line)
                if event.seq % _STRIDE == 0:
                    points.append((event.seq, offset))
            self._remember(
                run_id, st, clean=st.st_size, last_seq=events[-1].seq, points=points, verified=st.st_size
            )

    # ----------------------------------------------------------------------------------- group commit

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

    def _defer_sync(self, run_id: str, fd: int, batch: list[Future[None]]) -> None:
        if self._group is None:
            with self._mutex:
                if self._group is None:
                    hooks = self._fault_point is not None
                    self._group = GroupSync(
                        self._log_sync,
                        before=functools.partial(self._fault, "group.before_sync") if hooks else None,
                        after=functools.partial(self._fault, "append.after_fsync") if hooks else None,
                    )
        future = self._group.submit(run_id, fd)
        with self._unsynced_lock:
            self._unsynced[run_id] = future
        batch.append(future)

    def recent_sync_seconds(self) -> float | None:
        """How long this store's log fsyncs took lately (an exponential average; None before the first).

        None under fault injection too: a caller then hands every fsync it can to GroupSync, so the crash
        tests reach its kill points (group.before_sync) on a disk of any speed."""
        return None if self._fault_point is not None else self._log_sync.recent

    def synced(self, run_id: str, future: Future[None]) -> None:
        """After a deferred append's fsync is done: StoreIOError if it failed (the lines may be lost)."""
        self._settle(run_id, future)

    def _wait_synced(self, run_id: str) -> None:
        """Block until the run's deferred fsync (if any) is done; StoreIOError if it failed."""
        with self._unsynced_lock:
            future = self._unsynced.get(run_id)
        if future is not None:
            self._settle(run_id, future)

    def _settle(self, run_id: str, future: Future[None]) -> None:
        try:
            future.result()
        except OSError as exc:
            self._forget(run_id)
            raise _io_error(exc, f"appending to run {run_id!r}") from exc
        finally:
            with self._unsynced_lock:
                if self._unsynced.get(run_id) is future:
                    del self._unsynced[run_id]

    def _sync_pending(self, run_id: str) -> bool:
        """Whether the run's deferred fsync is still running (so taking its lock would wait)."""
        with self._unsynced_lock:
            future = self._unsynced.get(run_id)
        return future is not None and not future.done()

    def _read_snapshot(self, run_dir: Path) -> _Snapshot | None:
        """The snapshot if present and intact; a damaged one is ignored (the log alone rebuilds state)."""
        try:
            raw = (run_dir / SNAPSHOT).read_bytes()
        except FileNotFoundError:
            return None
        self.bytes_read += len(raw)
        try:
            obj = _unseal(raw.rstrip(b"\n"))
        except _BadRecord:
            return None
        seq, offset, state = obj.get("seq"), obj.get("offset"), obj.get("state")
        prefix_crc = obj.get("prefix_crc")
        if (
            not (isinstance(seq, int) and isinstance(offset, int) and isinstance(state, dict))
            or min(seq, offset) < 0
            or not (prefix_crc is None or isinstance(prefix_crc, int))
        ):
            return None
        return _Snapshot(seq, offset, state, prefix_crc)

    def _snapshot_matches(self, fd: int, snap: _Snapshot, size: int) -> bool:
        """Whether the line ending at the snapshot's offset is event `snap.seq` (cheap: one line)."""
        if snap.seq == 0:
            return snap.offset == 0
        if not 0 < snap.offset <= size or self._pread(fd, 1, snap.offset - 1) != b"\n":
            return False
        try:
            return _seq_of(self._line_ending_at(fd, snap.offset)) == snap.seq
        except _BadRecord:
            return False

    def _checked_read(self, run_id: str, run_dir: Path, fd: int) -> tuple[_Snapshot | None, list[AnyEvent]]:
        """The snapshot and the events after it, every byte of the log checked once in this process.

        Seeks to the snapshot's offset when the line there is its event and the bytes behind it match its
        `prefix_crc`; otherwise scans the whole log, which names a damaged line (StoreCorrupt).
        """
        snap = self._read_snapshot(run_dir)
        st = os.fstat(fd)
        size = st.st_size
        prefix: tuple[int, int] | None = None
        if (
            snap is not None
            and self._snapshot_matches(fd, snap, size)
            and self._prefix_holds(run_id, fd, st, snap)
        ):
            scan = self._scan(run_id, fd, snap.offset, snap.seq, size, after=snap.seq, limit=None)
            events = scan.events
            if snap.prefix_crc is not None:
                prefix = (snap.offset, snap.prefix_crc)
        else:
            scan = self._scan(run_id, fd, 0, 0, size, after=0, limit=None)
            events = scan.events
            if snap is not None:
                if scan.last_seq >= snap.seq:  # the offset was off, the snapshot still fits the log
                    events = [e for e in events if e.seq > snap.seq]
                    snap = _Snapshot(snap.seq, -1, snap.state)  # offset unknown: not remembered
                else:  # the snapshot is ahead of the log: trust the log
                    snap = None
        points = list(scan.points)
        if snap is not None and snap.offset >= 0:
            points.append((snap.seq, snap.offset))
        self._remember(
            run_id,
            st,
            clean=scan.end,
            last_seq=scan.last_seq,
            points=points,
            verified=scan.end,
            prefix=prefix,
        )
        return snap, events

    @_guard("loading a run")
    def load(self, run_id: str) -> LoadedRun:
        """Spec + snapshot + the events after it: seeks to the snapshot's offset instead of scanning."""
        run_dir = self._run_dir(run_id)
        fd = self._open_events(run_id)
        try:
            try:
                spec_raw = (run_dir / SPEC).read_bytes()
            except FileNotFoundError:
                raise self._not_found(run_id) from None
            try:
                spec_text = spec_raw.decode()
            except UnicodeDecodeError as exc:
                raise StoreCorrupt(f"run {run_id!r}: {SPEC} is not UTF-8 ({exc})", run_id=run_id) from None
            snap, events = self._checked_read(run_id, run_dir, fd)
        finally:
            os.close(fd)
        return LoadedRun(
            run_id=run_id,
            spec_text=spec_text,
            snapshot=None if snap is None else snap.state,
            snapshot_seq=0 if snap is None else snap.seq,
            events=events,
        )

    @_guard("repairing a run")
    def repair(self, run_id: str) -> Repair | None:
        """Cut the log after the last whole batch before its first damaged line; None if nothing is damaged.

        Only at a person's request (`loopengt check --repair`). The original log stays beside the new one
        as `events.jsonl.corrupt-<UTC time>` (a hard link: the same file under a second name), the new log
        replaces it by rename, the snapshot is removed (the next load folds the log) and checkpoints past
        the cut are renamed aside with the same suffix, so nothing is deleted.
        """
        run_dir = self._run_dir(run_id)
        with self.lock(run_id):
            fd = self._open_events(run_id)
            try:
                size = os.fstat(fd).st_size
                try:
                    self._scan(run_id, fd, 0, 0, size, after=_NO_LIMIT, limit=None)
                    return None
                except LogCorrupt as exc:
                    damage = exc
                suffix = f".corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
                tmp = run_dir / f"{TMP_PREFIX}{EVENTS}-{uuid.uuid4().hex}"
                removed_lines = self._copy_and_count(fd, tmp, damage.good_end, size)
            finally:
                os.close(fd)
            try:
                os.link(run_dir / EVENTS, run_dir / f"{EVENTS}{suffix}")
                (run_dir / TASKS).unlink(missing_ok=True)  # it may index cut events: rebuilt on demand
                os.replace(tmp, run_dir / EVENTS)
                (run_dir / SNAPSHOT).unlink(missing_ok=True)
                aside = self._set_aside_checkpoints(run_dir, damage.good_seq, suffix)
                _fsync_dir(run_dir)
            finally:
                tmp.unlink(missing_ok=True)
                self._forget(run_id)
        return Repair(
            run_id=run_id,
            line=damage.line,
            reason=damage.reason,
            kept_seq=damage.good_seq,
            removed_lines=removed_lines,
            removed_bytes=size - damage.good_end,
            backup=str(run_dir / f"{EVENTS}{suffix}"),
            removed_checkpoints=aside,
        )

    def _copy_and_count(self, fd: int, target: Path, keep: int, size: int) -> int:
        """Write the log's first `keep` bytes to a new durable file; return the lines after them."""
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            pos = 0
            while pos < keep:
                chunk = self._pread(fd, min(_CHUNK, keep - pos), pos)
                _write_all(out, chunk)
                pos += len(chunk)
            os.fsync(out)
        finally:
            os.close(out)
        lines, pos = 0, keep
        while pos < size:
            chunk = self._pread(fd, min(_CHUNK, size - pos), pos)
            lines += chunk.count(b"\n")
            pos += len(chunk)
        return lines + (1 if size > keep and self._pread(fd, 1, size - 1) != b"\n" else 0)

    def _set_aside_checkpoints(self, run_dir: Path, kept_seq: int, suffix: str) -> list[str]:
        """Rename checkpoints past `kept_seq` (or unreadable) to `<id>.json<suffix>`; their ids."""
        aside = []
        for cid in self._checkpoint_ids(run_dir):
            path = run_dir / CHECKPOINTS / f"{cid}.json"
            try:
                seq = _unseal(path.read_bytes().rstrip(b"\n")).get("seq")
            except (_BadRecord, FileNotFoundError):
                seq = None
            if not isinstance(seq, int) or seq > kept_seq:
                os.rename(path, path.with_name(f"{cid}.json{suffix}"))
                aside.append(cid)
        if aside:
            _fsync_dir(run_dir / CHECKPOINTS)
        return aside

    @_guard("reading events")
    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """Events with seq > after, starting the read from the nearest remembered offset."""
        check_id(run_id)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidArgument(f"after must be an integer >= 0, not {after!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument(f"limit must be an integer >= 0 or None, not {limit!r}")
        if limit == 0:
            if not self.exists(run_id):
                raise self._not_found(run_id)
            return []
        fd = self._open_events(run_id)
        try:
            st = os.fstat(fd)
            cache = self._cache(run_id, st)
            if cache is not None and cache.unchanged(st) and after >= cache.last_seq:
                return []
            prev_seq, start = self._start_for(run_id, fd, st, after)
            scan = self._scan(run_id, fd, start, prev_seq, st.st_size, after=after, limit=limit)
            if scan.stopped:  # where this read ended, so that the next page starts there (paged readers)
                self._remember(run_id, st, points=[*scan.points, (scan.events[-1].seq, scan.ends[-1])])
            else:
                self._remember(run_id, st, clean=scan.end, last_seq=scan.last_seq, points=scan.points)
            return scan.events
        finally:
            os.close(fd)

    @_guard("reading the last seq")
    def last_seq(self, run_id: str) -> int:
        """From the cache if the file did not change, else from its last line."""
        fd = self._open_events(run_id)
        try:
            return self._state(run_id, fd)[2]
        finally:
            os.close(fd)

    def _offset_after(self, run_id: str, fd: int, seq: int) -> int:
        """Byte offset just after event `seq`; InvalidArgument if the log does not reach `seq`."""
        st, clean, last = self._state(run_id, fd)
        if seq > last:
            raise InvalidArgument(
                f"run {run_id!r}: cannot snapshot at seq {seq}, the log ends at seq {last}", run_id=run_id
            )
        if seq == last:
            return clean
        cache = self._cache(run_id, st)
        if cache is not None and seq in cache.points:
            return cache.points[seq]
        prev_seq, start = self._start_for(run_id, fd, st, seq - 1)
        scan = self._scan(run_id, fd, start, prev_seq, st.st_size, after=seq - 1, limit=1)
        self._remember(run_id, st, points=scan.points)
        return scan.first_end  # `seq` may lie inside a batch: the offset after its own line

    @_guard("saving a snapshot")
    def save_snapshot(self, run_id: str, seq: int, state: dict[str, Any]) -> None:
        """Write a temp file, fsync, rename over snapshot.json, fsync the directory."""
        run_dir = self._run_dir(run_id)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InvalidArgument(f"snapshot seq must be an integer >= 0, not {seq!r}")
        if not isinstance(state, dict):
            raise InvalidArgument("snapshot state must be a JSON object")
        fd = self._open_events(run_id)
        try:
            offset = self._offset_after(run_id, fd, seq)
            st = os.fstat(fd)
            prefix_crc = self._prefix_crc(run_id, fd, st, offset)
        finally:
            os.close(fd)
        data = _seal({"seq": seq, "offset": offset, "prefix_crc": prefix_crc, "state": state})
        tmp = run_dir / f"{TMP_PREFIX}snapshot-{uuid.uuid4().hex}.json"
        try:
            _write_new_file(tmp, data)
            if self._fault_point is not None:
                self._fault("snapshot.after_temp")
            os.replace(tmp, run_dir / SNAPSHOT)
            if self._fault_point is not None:
                self._fault("snapshot.after_rename")
            _fsync_dir(run_dir)
        except OSError as exc:
            raise _io_error(exc, f"saving the snapshot of run {run_id!r}") from exc
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)
        self._remember(run_id, st, points=[(seq, offset)], prefix=(offset, prefix_crc))
        self._index_quietly(run_id)

    # ----------------------------------------------------------------------------------- task index

    @_guard("reading a task's events")
    def task_events(self, run_id: str, task_id: str) -> list[AnyEvent]:
        """The events that name `task_id`, in order: read through `tasks.idx`, not the whole log."""
        check_id(run_id)
        if not isinstance(task_id, str):
            raise InvalidArgument("task_id must be text")
        with self._exclusive(run_id):
            fd = self._open_events(run_id)
            try:
                for rebuild in (False, True):
                    found = self._task_events(run_id, fd, task_id, rebuild=rebuild)
                    if found is not None:
                        return found
            finally:
                os.close(fd)
        raise StoreCorrupt(  # a freshly rebuilt index disagrees with the log it was built from
            f"run {run_id!r}: {TASKS} does not match {EVENTS}", run_id=run_id
        )

    def _task_events(self, run_id: str, fd: int, task_id: str, *, rebuild: bool) -> list[AnyEvent] | None:
        """The task's events, or None when the index named an event that is not there (stale index)."""
        ifd = self._open_index(run_id)
        try:
            indexed = self._index_update(run_id, fd, ifd, rebuild=rebuild)
            events = []
            for seq, start, end in self._index_find(ifd, indexed, task_id):
                try:
                    obj = _unseal(self._pread(fd, end - start - 1, start))
                    _end_of(obj, _seq_of(obj))
                    event = event_from_record(obj)
                except (_BadRecord, ValidationError):
                    return None
                if event.seq != seq or getattr(event, "task_id", None) != task_id:
                    return None
                events.append(event)
            return events
        finally:
            os.close(ifd)

    def _open_index(self, run_id: str) -> int:
        """An fd on the run's own tasks.idx, never through a symlink (refused as foreign, like the log)."""
        path = self._path(run_id, TASKS)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._foreign(run_id, path) from None
            raise

    def _index_marker(self, ifd: int) -> tuple[int, int, int]:
        """(seq, log offset, index bytes that count) of the index's last marker; zeros if it has none."""
        end = os.fstat(ifd).st_size
        for _ in range(4 * _INDEX_PAGE):  # markers are at most a page of events apart: else it is damaged
            nl = self._rfind_newline(ifd, end) if end > 0 else -1
            if nl < 0:
                break
            start = self._rfind_newline(ifd, nl) + 1
            line = self._pread(ifd, nl - start, start)
            if line.startswith(b"#\t"):
                try:
                    _, seq, offset, length, crc = line.split(b"\t")
                    if not 0 <= int(length) <= start:
                        return 0, 0, 0
                    entries = self._pread(ifd, int(length), start - int(length))
                    if b"%08x" % zlib.crc32(entries) != crc:
                        return 0, 0, 0  # its entries did not all reach the disk (power loss): rebuild
                    return int(seq), int(offset), nl + 1
                except ValueError:
                    return 0, 0, 0  # damaged: rebuild
            end = start
        return 0, 0, 0

    def _index_update(self, run_id: str, fd: int, ifd: int, *, rebuild: bool = False) -> int:
        """Index the log's events after the last marker (all of them when `rebuild`); returns the bytes
        of the index that count. The caller holds the run's lock."""
        st, _, last = self._state(run_id, fd)
        seq, offset, keep = (0, 0, 0) if rebuild else self._index_marker(ifd)
        if seq > last or not self._snapshot_matches(fd, _Snapshot(seq, offset, {}), st.st_size):
            seq, offset, keep = 0, 0, 0  # the log is not the one indexed: start again
        if os.fstat(ifd).st_size != keep:
            os.ftruncate(ifd, keep)
        while seq < last:
            scan = self._scan(run_id, fd, offset, seq, st.st_size, after=seq, limit=_INDEX_PAGE)
            if not scan.events:
                break
            lines, start = [], offset
            for event, end in zip(scan.events, scan.ends, strict=True):
                task = getattr(event, "task_id", None)
                if isinstance(task, str):
                    lines.append(b"%s\t%d\t%d\t%d\n" % (json.dumps(task).encode(), event.seq, start, end))
                start = end
            seq, offset = scan.last_seq, scan.end
            entries = b"".join(lines)
            data = entries + b"#\t%d\t%d\t%d\t%08x\n" % (seq, offset, len(entries), zlib.crc32(entries))
            os.lseek(ifd, keep, os.SEEK_SET)
            _write_all(ifd, data)
            _datasync(ifd)  # earlier chunks are durable, so only the last one can ever be torn
            keep += len(data)
        return keep

    def _index_find(self, ifd: int, size: int, task_id: str) -> list[tuple[int, int, int]]:
        """(seq, start, end) of each indexed event of `task_id`, reading the index in chunks."""
        needle = b"\n" + json.dumps(task_id).encode() + b"\t"
        found: list[tuple[int, int, int]] = []
        pos, carry = 0, b""
        while pos < size:
            chunk = self._pread(ifd, min(_CHUNK, size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            block = carry + chunk
            cut = block.rfind(b"\n") + 1
            body, carry = b"\n" + block[:cut], block[cut:]
            at = body.find(needle)
            while at >= 0:
                stop = body.index(b"\n", at + 1)
                seq, start, end = body[at + len(needle) : stop].split(b"\t")
                found.append((int(seq), int(start), int(end)))
                at = body.find(needle, stop)
        return found

    def _index_quietly(self, run_id: str) -> None:
        """Bring the task index up to date; a failure only leaves more for the next lookup to read."""
        with suppress(LoopengtError, OSError), self._exclusive(run_id):
            fd = self._open_events(run_id)
            try:
                ifd = self._open_index(run_id)
                try:
                    self._index_update(run_id, fd, ifd)
                finally:
                    os.close(ifd)
            finally:
                os.close(fd)

    def _crc_range(self, fd: int, start: int, end: int, crc: int) -> int:
        """`crc` carried on over the log's bytes [start, end); _BadRecord if the file ends before `end`."""
        pos = start
        while pos < end:
            chunk = self._pread(fd, min(_CHUNK, end - pos), pos)
            if not chunk:
                raise _BadRecord("the log is shorter than the snapshot says")
            crc = zlib.crc32(chunk, crc)
            pos += len(chunk)
        return crc

    def _prefix_crc(self, run_id: str, fd: int, st: os.stat_result, offset: int) -> int:
        """CRC-32 of the log's bytes before `offset`, carried on from the last known-good prefix.

        A writer loads the run (checking the log) before it snapshots, so only the bytes appended since
        the previous snapshot are read here: one snapshot interval, not the whole log.
        """
        cache = self._cache(run_id, st)
        start, crc = cache.prefix if cache is not None and cache.prefix[0] <= offset else (0, 0)
        try:
            return self._crc_range(fd, start, offset, crc)
        except _BadRecord as exc:
            raise InvalidArgument(f"run {run_id!r}: cannot snapshot at byte {offset}: {exc}") from None

    def _prefix_holds(self, run_id: str, fd: int, st: os.stat_result, snap: _Snapshot) -> bool:
        """Whether the log's bytes behind the snapshot are those it was taken over (once per process)."""
        cache = self._cache(run_id, st)
        if cache is not None and cache.verified >= snap.offset:
            return True
        if snap.prefix_crc is None:
            return False  # an older snapshot: scan the lines once instead
        try:
            return self._crc_range(fd, 0, snap.offset, 0) == snap.prefix_crc
        except _BadRecord:
            return False

    # ----------------------------------------------------------------------------------- checkpoints

    def _checkpoint_from(self, run_id: str, checkpoint_id: str, raw: bytes) -> Checkpoint:
        try:
            obj = _unseal(raw.rstrip(b"\n"))
            seq, label, created, state = obj["seq"], obj["label"], obj["created_at"], obj["state"]
            if not (
                isinstance(seq, int)
                and (label is None or isinstance(label, str))
                and isinstance(created, str)
                and isinstance(state, dict)
            ):
                raise _BadRecord("fields of the wrong type")
        except (_BadRecord, KeyError) as exc:
            raise StoreCorrupt(
                f"run {run_id!r}: checkpoint {checkpoint_id!r} is corrupt ({exc})", run_id=run_id
            ) from None
        return Checkpoint(run_id, checkpoint_id, seq, label, created, state)

    @_guard("saving a checkpoint")
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Temp file + fsync + link(2): the link fails if the id exists, so two savers cannot both win."""
        check_checkpoint(checkpoint)
        run_id, cid = checkpoint.run_id, checkpoint.checkpoint_id
        run_dir = self._run_dir(run_id)
        if not (run_dir / EVENTS).is_file():
            raise self._not_found(run_id)
        data = _seal(
            {
                "run_id": run_id,
                "checkpoint_id": cid,
                "seq": checkpoint.seq,
                "label": checkpoint.label,
                "created_at": checkpoint.created_at,
                "state": checkpoint.state,
            }
        )
        cp_dir = self._checkpoints_dir(run_id)
        final = cp_dir / f"{cid}.json"
        tmp = cp_dir / f"{TMP_PREFIX}{cid}-{uuid.uuid4().hex}.json"
        try:
            cp_dir.mkdir(exist_ok=True)
            self._fail("checkpoint.enospc", tmp)
            _write_new_file(tmp, data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise StoreConflict(
                    f"run {run_id!r} already has a checkpoint {cid!r}", run_id=run_id
                ) from None
            _fsync_dir(cp_dir)
        except OSError as exc:
            raise _io_error(exc, f"saving checkpoint {cid!r} of run {run_id!r}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _checkpoints_dir(self, run_id: str) -> Path:
        """The run's checkpoints directory, refused as foreign when it is a symlink (like the log)."""
        self._own_dir(run_id)
        path = self._run_dir(run_id) / CHECKPOINTS
        if path.is_symlink():
            raise self._foreign(run_id, str(path))
        return path

    @_guard("discarding a checkpoint")
    def discard_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Unlink the checkpoint's file (durably); nothing if there is none."""
        cp_dir = self._checkpoints_dir(run_id)
        path = cp_dir / f"{check_id(checkpoint_id, 'checkpoint_id')}.json"
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _io_error(exc, f"discarding checkpoint {checkpoint_id!r} of run {run_id!r}") from exc
        _fsync_dir(cp_dir)

    def _checkpoint_ids(self, run_dir: Path) -> list[str]:
        try:
            names = os.listdir(run_dir / CHECKPOINTS)
        except FileNotFoundError:
            return []
        return sorted(
            name[:-5] for name in names if name.endswith(".json") and ID_PATTERN.fullmatch(name[:-5])
        )

    @_guard("reading a checkpoint")
    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """The checkpoint `checkpoint_id` of the run.

        Raises:
            NotFound: no such run, or no such checkpoint (the message lists the run's checkpoints).
        """
        run_dir = self._run_dir(run_id)
        cid = check_id(checkpoint_id, "checkpoint_id")
        if not (run_dir / EVENTS).is_file():
            raise self._not_found(run_id)
        try:
            raw = (run_dir / CHECKPOINTS / f"{cid}.json").read_bytes()
        except FileNotFoundError:
            known = self._checkpoint_ids(run_dir)
            listing = ", ".join(known) if known else "none"
            raise NotFound(
                f"run {run_id!r} has no checkpoint {cid!r}; its checkpoints: {listing}", run_id=run_id
            ) from None
        return self._checkpoint_from(run_id, cid, raw)

    @_guard("listing checkpoints")
    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Oldest first: by seq, then creation time, then id."""
        run_dir = self._run_dir(run_id)
        if not (run_dir / EVENTS).is_file():
            raise self._not_found(run_id)
        found = []
        for cid in self._checkpoint_ids(run_dir):
            try:
                raw = (run_dir / CHECKPOINTS / f"{cid}.json").read_bytes()
            except FileNotFoundError:
                continue
            found.append(self._checkpoint_from(run_id, cid, raw))
        return sorted(found, key=lambda c: (c.seq, c.created_at, c.checkpoint_id))

    # ----------------------------------------------------------------------------------- listing

    @_guard("listing runs")
    def list_runs(self) -> list[str]:
        """Newest first by creation time (spec.yaml's mtime, set at creation), then by id."""
        try:
            entries = list(os.scandir(self.runs_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        dated: list[tuple[int, str]] = []
        for entry in entries:
            if not ID_PATTERN.fullmatch(entry.name):
                continue  # temp directories and strays
            try:
                dated.append((os.stat(Path(entry.path) / SPEC).st_mtime_ns, entry.name))
            except (FileNotFoundError, NotADirectoryError):
                continue
        dated.sort(key=lambda item: (-item[0], item[1]))
        return [name for _, name in dated]

    @_guard("checking a run")
    def exists(self, run_id: str) -> bool:
        """Whether the store holds a run with this id (its log file exists)."""
        return (self._run_dir(run_id) / EVENTS).is_file()

    @_guard("deleting a run")
    def delete_run(self, run_id: str) -> None:
        """Rename the run directory to a temp name (atomic, durable), then remove it at leisure.

        `list_runs` and every lookup skip temp names, so a crash after the rename leaves only a stray
        directory, never half a run.
        """
        run_dir = self._run_dir(run_id)
        if not (run_dir / EVENTS).is_file():
            raise self._not_found(run_id)
        trash = self.runs_dir / f"{TMP_PREFIX}deleted-{run_id}-{uuid.uuid4().hex}"
        try:
            os.rename(run_dir, trash)
        except FileNotFoundError:
            raise self._not_found(run_id) from None
        except OSError as exc:
            raise _io_error(exc, f"deleting run {run_id!r}") from exc
        self._forget(run_id)
        try:
            _fsync_dir(self.runs_dir)
        except OSError as exc:
            raise _io_error(exc, f"deleting run {run_id!r}") from exc
        finally:
            shutil.rmtree(trash, ignore_errors=True)

    @_guard("sweeping leftovers")
    def sweep_leftovers(
        self, *, older_than_seconds: float = 3600.0, dry_run: bool = False
    ) -> tuple[int, int]:
        """Remove temp files and directories that crashed writers left behind; returns (entries, bytes).

        A new run's directory, a snapshot or a checkpoint is written under a `.tmp-` name and renamed
        into place, and a deleted run is renamed to one before removal: a crash in between leaves the
        temp name, which no reader looks at. Only entries untouched for `older_than_seconds` go, so a
        writer still at work in another process keeps its own.
        """
        cutoff = time.time() - older_than_seconds
        found: list[Path] = []
        try:
            run_dirs = list(os.scandir(self.runs_dir))
        except (FileNotFoundError, NotADirectoryError):
            return 0, 0
        places = [self.runs_dir]
        for entry in run_dirs:
            if ID_PATTERN.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                places += [Path(entry.path), Path(entry.path) / CHECKPOINTS]
        freed = 0
        for place in places:
            if place.is_symlink():
                continue  # never follow a link out of the store
            try:
                entries = list(os.scandir(place))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:  # a live writer may rename or remove its temp file at any moment
                    if (
                        entry.name.startswith(TMP_PREFIX)
                        and entry.stat(follow_symlinks=False).st_mtime < cutoff
                    ):
                        freed += _size_of(Path(entry.path))
                        found.append(Path(entry.path))
                except FileNotFoundError:
                    continue
        if not dry_run:
            for path in found:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        return len(found), freed

    @_guard("reading a run's version")
    def version(self, run_id: str) -> str:
        """Size and mtime of the log: the size grows with every append, so watchers can poll this."""
        try:
            st = os.stat(self._run_dir(run_id) / EVENTS)
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(run_id) from None
        return f"{st.st_size}:{st.st_mtime_ns}"

    # ----------------------------------------------------------------------------------- locking

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """flock(LOCK_EX) on the run's lock file, plus a per-run thread lock for this process.

        Blocks until free. Not re-entrant; `append` inside the block sees it is held and does not relock.
        """
        return self._lock(run_id, wait=True)

    def try_lock(self, run_id: str) -> AbstractContextManager[None]:
        """`lock` that raises LockBusy instead of waiting: a transition here is a local append+fsync,
        quick enough for an event loop as long as it never waits for another writer (Runs.quick)."""
        return self._lock(run_id, wait=False)

    @contextmanager
    def _lock(self, run_id: str, *, wait: bool) -> Iterator[None]:
        events = self._path(run_id, EVENTS)
        if not wait and self._unsynced and self._sync_pending(run_id):
            raise LockBusy(run_id)
        self._own_dir(run_id)
        if not os.path.isfile(events):
            raise self._not_found(run_id)
        mine = self._thread_lock(run_id)
        if not mine.acquire(blocking=wait):
            raise LockBusy(run_id)
        try:
            try:
                fd = os.open(self._path(run_id, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _io_error(exc, f"locking run {run_id!r}") from exc
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LockBusy(run_id) from None
                except OSError as exc:
                    raise _io_error(exc, f"locking run {run_id!r}") from exc
                self._held[run_id] = threading.get_ident()
                try:
                    yield
                finally:
                    del self._held[run_id]
            finally:
                os.close(fd)  # closing the only fd on the open file description releases the flock
        finally:
            mine.release()

    def close(self) -> None:
        """Close cached append fds and forget caches; the store stays usable (it reopens on demand)."""
        if self._group is not None:
            self._group.close()
        with self._mutex:
            fds = self._fds.clear()
            self._caches.clear()
        for fd in fds:
            with suppress(OSError):
                os.close(fd)
