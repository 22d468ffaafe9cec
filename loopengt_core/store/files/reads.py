"""The file store's reads of a run's log, each starting from what this process remembers about it.

`events(after=...)` seeks to the nearest remembered offset (or counts lines back from the log's end),
`last_seq` reads the last line, `load` seeks to the snapshot's offset, and the first read of a run in a
process checks every byte of the log once: behind the snapshot in bulk against its `prefix_crc`, after
it line by line.
"""

from __future__ import annotations

import os
from pathlib import Path

from loopengt_core.model.errors import InvalidArgument, StoreCorrupt
from loopengt_core.model.events import AnyEvent
from loopengt_core.store import LoadedRun, check_id
from loopengt_core.store.files.logreader import LogReader
from loopengt_core.store.files.records import EVENTS, SPEC
from loopengt_core.store.files.runcache import OpenLogs
from loopengt_core.store.files.runfiles import RunFiles
from loopengt_core.store.files.snapshots import Snapshot, prefix_holds, read_snapshot, snapshot_matches


class RunReads:
    """Reads of one store's run logs through its cache (`logs`) and its line reader (`reader`)."""

    def __init__(self, files: RunFiles, logs: OpenLogs, reader: LogReader) -> None:
        """Share the store's files, cache and reader."""
        self._files, self._logs, self._reader = files, logs, reader

    def state(self, run_id: str, fd: int) -> tuple[os.stat_result, int, int]:
        """(stat, clean end, last seq) of an open log, from the cache when the file is unchanged."""
        st = os.fstat(fd)
        cache = self._logs.cache(run_id, st)
        if cache is not None and cache.unchanged(st):
            return st, cache.clean, cache.last_seq
        clean, last = self._reader.tail(run_id, fd, st.st_size, cache)
        self._logs.remember(run_id, st, clean=clean, last_seq=last)
        return st, clean, last

    def start_for(self, run_id: str, fd: int, st: os.stat_result, after: int) -> tuple[int, int]:
        """Where to start reading for events after `after`: (seq, offset just after it), seq <= after.

        The nearer of a remembered point before `after` (reading forwards) and the remembered end of the
        log (counting lines backwards), so following a log's end never reads the whole file.
        """
        cache = self._logs.cache(run_id, st)
        if cache is None:
            return 0, 0
        seq, offset = cache.best_point(after)
        behind = cache.last_seq - after
        if 0 < behind < after - seq:
            return after, self._reader.lines_back(fd, cache.clean, behind)
        return seq, offset

    def checked_read(self, run_id: str, run_dir: Path, fd: int) -> tuple[Snapshot | None, list[AnyEvent]]:
        """The snapshot and the events after it, every byte of the log checked once in this process.

        Seeks to the snapshot's offset when the line there is its event and the bytes behind it match its
        `prefix_crc`; otherwise scans the whole log, which names a damaged line (StoreCorrupt).
        """
        snap = read_snapshot(self._reader, run_dir)
        st = os.fstat(fd)
        size = st.st_size
        prefix: tuple[int, int] | None = None
        if (
            snap is not None
            and snapshot_matches(self._reader, fd, snap, size)
            and prefix_holds(self._reader, fd, self._logs.cache(run_id, st), snap)
        ):
            scan = self._reader.scan(run_id, fd, snap.offset, snap.seq, size, after=snap.seq, limit=None)
            events = scan.events
            if snap.prefix_crc is not None:
                prefix = (snap.offset, snap.prefix_crc)
        else:
            scan = self._reader.scan(run_id, fd, 0, 0, size, after=0, limit=None)
            events = scan.events
            if snap is not None:
                if scan.last_seq >= snap.seq:  # the offset was off, the snapshot still fits the log
                    events = [e for e in events if e.seq > snap.seq]
                    snap = Snapshot(snap.seq, -1, snap.state)  # offset unknown: not remembered
                else:  # the snapshot is ahead of the log: trust the log
                    snap = None
        points = list(scan.points)
        if snap is not None and snap.offset >= 0:
            points.append((snap.seq, snap.offset))
        self._logs.remember(
            run_id,
            st,
            clean=scan.end,
            last_seq=scan.last_seq,
            points=points,
            verified=scan.end,
            prefix=prefix,
        )
        return snap, events

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """Events with seq > after, starting the read from the nearest remembered offset."""
        check_id(run_id)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidArgument(f"after must be an integer >= 0, not {after!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument(f"limit must be an integer >= 0 or None, not {limit!r}")
        if limit == 0:
            if not (self._files.run_dir(run_id) / EVENTS).is_file():
                raise self._files.not_found(run_id)
            return []
        fd = self._files.open_events(run_id)
        try:
            st = os.fstat(fd)
            cache = self._logs.cache(run_id, st)
            if cache is not None and cache.unchanged(st) and after >= cache.last_seq:
                return []
            prev_seq, start = self.start_for(run_id, fd, st, after)
            scan = self._reader.scan(run_id, fd, start, prev_seq, st.st_size, after=after, limit=limit)
            if scan.stopped:  # where this read ended, so that the next page starts there (paged readers)
                self._logs.remember(run_id, st, points=[*scan.points, (scan.events[-1].seq, scan.ends[-1])])
            else:
                self._logs.remember(run_id, st, clean=scan.end, last_seq=scan.last_seq, points=scan.points)
            return scan.events
        finally:
            os.close(fd)

    def last_seq(self, run_id: str) -> int:
        """From the cache if the file did not change, else from its last line."""
        fd = self._files.open_events(run_id)
        try:
            return self.state(run_id, fd)[2]
        finally:
            os.close(fd)

    def offset_after(self, run_id: str, fd: int, seq: int) -> int:
        """Byte offset just after event `seq`; InvalidArgument if the log does not reach `seq`."""
        st, clean, last = self.state(run_id, fd)
        if seq > last:
            raise InvalidArgument(
                f"run {run_id!r}: cannot snapshot at seq {seq}, the log ends at seq {last}", run_id=run_id
            )
        if seq == last:
            return clean
        cache = self._logs.cache(run_id, st)
        if cache is not None and seq in cache.points:
            return cache.points[seq]
        prev_seq, start = self.start_for(run_id, fd, st, seq - 1)
        scan = self._reader.scan(run_id, fd, start, prev_seq, st.st_size, after=seq - 1, limit=1)
        self._logs.remember(run_id, st, points=scan.points)
        return scan.first_end  # `seq` may lie inside a batch: the offset after its own line

    def load(self, run_id: str) -> LoadedRun:
        """Spec + snapshot + the events after it: seeks to the snapshot's offset instead of scanning."""
        run_dir = self._files.run_dir(run_id)
        fd = self._files.open_events(run_id)
        try:
            try:
                spec_raw = (run_dir / SPEC).read_bytes()
            except FileNotFoundError:
                raise self._files.not_found(run_id) from None
            try:
                spec_text = spec_raw.decode()
            except UnicodeDecodeError as exc:
                raise StoreCorrupt(f"run {run_id!r}: {SPEC} is not UTF-8 ({exc})", run_id=run_id) from None
            snap, events = self.checked_read(run_id, run_dir, fd)
        finally:
            os.close(fd)
        return LoadedRun(
            run_id=run_id,
            spec_text=spec_text,
            snapshot=None if snap is None else snap.state,
            snapshot_seq=0 if snap is None else snap.seq,
            events=events,
        )
