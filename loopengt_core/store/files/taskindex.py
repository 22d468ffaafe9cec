"""The task index: `tasks.idx` answers "which events name this task" without reading the whole log.

`task_events(run_id, task_id)` answers a late or repeated submission without reading the log.
`tasks.idx` holds a line `<task id as JSON>\t<seq>\t<start>\t<end>` (byte range of the event's line in
events.jsonl) for every event whose data has a `task_id`, and after each batch of those a marker
`#\t<seq>\t<offset>\t<length>\t<crc>`: the log is indexed up to event `seq`, which ends at `offset`, and
the `length` bytes of entries before the marker have that CRC-32. It is brought up to date under the
run's lock when a snapshot is saved and before a lookup (only the events after the last marker are
read), one write and one fdatasync each time, so only the last chunk can be torn, and its CRC tells;
lines after the last marker are a torn write and are cut off. A marker that does not match the log (a
repaired log) or cannot be read, or a missing file, makes the lookup rebuild the index from the log.
A lookup reads the index (a few dozen bytes per task event) and then only the events it names.
The index is derived and rebuildable: losing it loses nothing.
"""

from __future__ import annotations

import errno
import json
import os
import zlib
from contextlib import suppress

from pydantic import ValidationError

from loopengt_core.model.errors import InvalidArgument, LoopengtError, StoreCorrupt
from loopengt_core.model.events import AnyEvent, event_from_record
from loopengt_core.store import check_id
from loopengt_core.store.files import fsio
from loopengt_core.store.files.locking import RunLocks
from loopengt_core.store.files.logreader import CHUNK, LogReader
from loopengt_core.store.files.reads import RunReads
from loopengt_core.store.files.records import EVENTS, TASKS, BadRecord, end_of, seq_of, unseal
from loopengt_core.store.files.runfiles import RunFiles
from loopengt_core.store.files.snapshots import Snapshot, snapshot_matches

INDEX_PAGE = 1000  # events read per step while bringing a task index up to date (bounds memory)


class TaskIndex:
    """The task indexes of one store's runs, read and written under the run's lock."""

    def __init__(self, reader: LogReader, files: RunFiles, locks: RunLocks, reads: RunReads) -> None:
        """Share the store's reader, files, locks and log reads."""
        self.reader, self.files, self.locks, self.reads = reader, files, locks, reads

    def task_events(self, run_id: str, task_id: str) -> list[AnyEvent]:
        """The events that name `task_id`, in order: read through `tasks.idx`, not the whole log."""
        check_id(run_id)
        if not isinstance(task_id, str):
            raise InvalidArgument("task_id must be text")
        with self.locks.exclusive(run_id):
            fd = self.files.open_events(run_id)
            try:
                for rebuild in (False, True):
                    found = self.events(run_id, fd, task_id, rebuild=rebuild)
                    if found is not None:
                        return found
            finally:
                os.close(fd)
        raise StoreCorrupt(  # a freshly rebuilt index disagrees with the log it was built from
            f"run {run_id!r}: {TASKS} does not match {EVENTS}", run_id=run_id
        )

    def update_quietly(self, run_id: str) -> None:
        """Bring the task index up to date; a failure only leaves more for the next lookup to read."""
        with suppress(LoopengtError, OSError), self.locks.exclusive(run_id):
            fd = self.files.open_events(run_id)
            try:
                ifd = self.open(run_id)
                try:
                    self.update(run_id, fd, ifd)
                finally:
                    os.close(ifd)
            finally:
                os.close(fd)

    def events(self, run_id: str, fd: int, task_id: str, *, rebuild: bool) -> list[AnyEvent] | None:
        """The task's events, or None when the index named an event that is not there (stale index)."""
        ifd = self.open(run_id)
        try:
            indexed = self.update(run_id, fd, ifd, rebuild=rebuild)
            events = []
            for seq, start, end in self.find(ifd, indexed, task_id):
                try:
                    obj = unseal(self.reader.pread(fd, end - start - 1, start))
                    end_of(obj, seq_of(obj))
                    event = event_from_record(obj)
                except (BadRecord, ValidationError):
                    return None
                if event.seq != seq or getattr(event, "task_id", None) != task_id:
                    return None
                events.append(event)
            return events
        finally:
            os.close(ifd)

    def open(self, run_id: str) -> int:
        """An fd on the run's own tasks.idx, never through a symlink (refused as foreign, like the log)."""
        path = self.files.path(run_id, TASKS)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.files.foreign(run_id, path) from None
            raise

    def marker(self, ifd: int) -> tuple[int, int, int]:
        """(seq, log offset, index bytes that count) of the index's last marker; zeros if it has none."""
        end = os.fstat(ifd).st_size
        for _ in range(4 * INDEX_PAGE):  # markers are at most a page of events apart: else it is damaged
            nl = self.reader.rfind_newline(ifd, end) if end > 0 else -1
            if nl < 0:
                break
            start = self.reader.rfind_newline(ifd, nl) + 1
            line = self.reader.pread(ifd, nl - start, start)
            if line.startswith(b"#\t"):
                try:
                    _, seq, offset, length, crc = line.split(b"\t")
                    if not 0 <= int(length) <= start:
                        return 0, 0, 0
                    entries = self.reader.pread(ifd, int(length), start - int(length))
                    if b"%08x" % zlib.crc32(entries) != crc:
                        return 0, 0, 0  # its entries did not all reach the disk (power loss): rebuild
                    return int(seq), int(offset), nl + 1
                except ValueError:
                    return 0, 0, 0  # damaged: rebuild
            end = start
        return 0, 0, 0

    def update(self, run_id: str, fd: int, ifd: int, *, rebuild: bool = False) -> int:
        """Index the log's events after the last marker (all of them when `rebuild`); returns the bytes
        of the index that count. The caller holds the run's lock."""
        st, _, last = self.reads.state(run_id, fd)
        seq, offset, keep = (0, 0, 0) if rebuild else self.marker(ifd)
        if seq > last or not snapshot_matches(self.reader, fd, Snapshot(seq, offset, {}), st.st_size):
            seq, offset, keep = 0, 0, 0  # the log is not the one indexed: start again
        if os.fstat(ifd).st_size != keep:
            os.ftruncate(ifd, keep)
        while seq < last:
            scan = self.reader.scan(run_id, fd, offset, seq, st.st_size, after=seq, limit=INDEX_PAGE)
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
            fsio.write_all(ifd, data)
            fsio.datasync(ifd)  # earlier chunks are durable, so only the last one can ever be torn
            keep += len(data)
        return keep

    def find(self, ifd: int, size: int, task_id: str) -> list[tuple[int, int, int]]:
        """(seq, start, end) of each indexed event of `task_id`, reading the index in chunks."""
        needle = b"\n" + json.dumps(task_id).encode() + b"\t"
        found: list[tuple[int, int, int]] = []
        pos, carry = 0, b""
        while pos < size:
            chunk = self.reader.pread(ifd, min(CHUNK, size - pos), pos)
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
