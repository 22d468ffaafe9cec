"""Reading a run's log: forward scans that check every line, and O(1) reads of its end.

Batches: one `append` is one transition of the engine, so it must survive whole or not at all. When an
append holds more than one event, every line of it carries `"end"`: the seq of the append's last event
(covered by the checksum, removed before the line becomes an `Event`). A line without `end` is a batch
of one, so logs written before the marker existed still load, and single-event appends stay small.
Readers count a batch only once its last line (`seq == end`) is present: if the last good lines of the
log are a batch that stops short of its `end` (a crash part-way through the write), they are dropped
exactly like a torn tail, `last_seq` is the end of the batch before, and the next append truncates them
under the lock. Only the final batch can be unfinished, because a batch is written by one append that
holds the lock and the file only grows; a batch broken off by another line is corruption. A snapshot or
a remembered offset may point inside a complete batch; a read that starts there takes the batch's `end`
from its first line.

Corruption: a bad line (checksum, JSON, seq gap) anywhere but at the very end is damage, never a torn
write: it raises `LogCorrupt` (a StoreCorrupt) naming the file and the line.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import AnyEvent, event_from_record
from loopengt_core.store.files.records import EVENTS, BadRecord, end_of, seq_of, unseal
from loopengt_core.store.files.runcache import RunCache

FIRST_CHUNK = 1 << 16  # forward reads start small (a `limit`ed read stops early) and double
CHUNK = 1 << 20
BACK_BLOCK = 8192  # first backward read when looking for the start of the last line
STRIDE = 256  # remember the byte offset of every 256th seq, so `events(after=...)` seeks near its target
NO_LIMIT = 1 << 62


class LogCorrupt(StoreCorrupt):
    """A damaged line in a run's log; `good_end`/`good_seq` mark the end of the last whole batch before it."""

    def __init__(
        self, message: str, *, run_id: str, line: int, reason: str, good_end: int, good_seq: int
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.line, self.reason, self.good_end, self.good_seq = line, reason, good_end, good_seq


@dataclass
class Scan:
    """What one forward read found: the events it kept and where the whole batches it read end."""

    events: list[AnyEvent]
    end: int  # offset just after the last complete batch consumed
    last_seq: int  # the seq that ends that batch
    stopped: bool  # ended early because `limit` was reached
    points: list[tuple[int, int]]
    first_end: int  # offset just after the first returned event (`end` if none)
    ends: list[int] = field(default_factory=list)  # offset just after each returned event's line


class LogReader:
    """Reads of run logs for one store, counting what they cost (`lines_parsed`, `bytes_read`: for tests
    and diagnostics). `path(run_id, name)` names a run's file in error messages."""

    def __init__(self, path: Callable[[str, str], str]) -> None:
        """Start with zero counts; `path` is the store's way of naming a run's file."""
        self.path = path
        self.lines_parsed = 0
        self.bytes_read = 0

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        """`os.pread`, counted in `bytes_read`."""
        data = os.pread(fd, length, offset)
        self.bytes_read += len(data)
        return data

    def rfind_newline(self, fd: int, end: int) -> int:
        """Offset of the last b"\\n" before `end`, or -1; reads backwards in growing blocks."""
        pos, block = end, BACK_BLOCK
        while pos > 0:
            start = max(0, pos - block)
            found = self.pread(fd, pos - start, start).rfind(b"\n")
            if found >= 0:
                return start + found
            pos, block = start, min(block * 2, CHUNK)
        return -1

    def lines_back(self, fd: int, end: int, count: int) -> int:
        """Offset where the last `count` lines before `end` (a line boundary) start; 0 if fewer."""
        search_end, block = end - 1, BACK_BLOCK
        while search_end > 0:
            start = max(0, search_end - block)
            chunk = self.pread(fd, search_end - start, start)
            found = len(chunk)
            while (found := chunk.rfind(b"\n", 0, found)) >= 0:
                count -= 1
                if count == 0:
                    return start + found + 1
            search_end, block = start, min(block * 2, CHUNK)
        return 0

    def line_ending_at(self, fd: int, end: int) -> dict[str, Any]:
        """Parse the line whose newline is the byte at `end - 1`."""
        start = self.rfind_newline(fd, end - 1) + 1
        self.lines_parsed += 1
        return unseal(self.pread(fd, end - 1 - start, start))

    def scan(
        self, run_id: str, fd: int, start: int, prev_seq: int, size: int, *, after: int, limit: int | None
    ) -> Scan:
        """Read lines from `start` (just after event `prev_seq`) up to `size`, checking every one.

        Collects events with seq > after, at most `limit`, and stops only between batches. A bad or
        unterminated line with nothing after it is a torn tail and ends the scan; a bad line followed by
        more data is corruption. A batch still short of its `end` when the lines run out is dropped with
        its events and offsets, so `end` and `last_seq` always describe whole batches.
        """
        events: list[AnyEvent] = []
        points: list[tuple[int, int]] = []
        pending: list[tuple[int, int]] = []  # points inside the open batch, kept once it completes
        want = NO_LIMIT if limit is None else limit
        buf, i, pos, block = b"", 0, start, FIRST_CHUNK
        end, seq = start, prev_seq  # just after the last complete batch
        cur = batch_end = prev_seq  # the last line read and the seq ending its batch (cur < batch_end: open)
        kept, first_end = 0, start
        ends: list[int] = []
        while cur < batch_end or len(events) < want:
            nl = buf.find(b"\n", i)
            if nl < 0:
                chunk = self.pread(fd, min(block, size - pos), pos) if pos < size else b""
                if not chunk:
                    break  # end of file; anything left in buf is an unterminated (torn) tail
                buf, i, pos, block = buf[i:] + chunk, 0, pos + len(chunk), min(block * 2, CHUNK)
                continue
            raw, line_end = buf[i:nl], pos - (len(buf) - nl - 1)
            i = nl + 1
            line_no = cur + 1  # every earlier line held seq == its line number
            self.lines_parsed += 1
            try:
                obj = unseal(raw)
                got = seq_of(obj)
                ends_at = end_of(obj, got)
                event = event_from_record(obj) if got > after and len(events) < want else None
            except (BadRecord, ValidationError) as exc:
                if i >= len(buf) and pos >= size:
                    break  # the last line: a torn write, dropped
                reason = str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)
                raise self.corrupt(
                    run_id, line_no, f"{reason}; not the last line, so not a torn write", end, seq
                ) from None
            if got != cur + 1:
                raise self.corrupt(
                    run_id,
                    line_no,
                    f"seq {got} where {cur + 1} belongs: a line missing or repeated",
                    end,
                    seq,
                )
            if cur < batch_end and ends_at != batch_end:
                raise self.corrupt(
                    run_id,
                    line_no,
                    f"it ends its batch at seq {ends_at}, but the batch it continues ends at seq "
                    f"{batch_end}: an append broken off mid-log",
                    end,
                    seq,
                )
            cur, batch_end = got, ends_at
            if got % STRIDE == 0:
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
        return Scan(events, end, seq, len(events) >= want, points, first_end if events else end, ends)

    def corrupt(self, run_id: str, line: int, reason: str, good_end: int, good_seq: int) -> LogCorrupt:
        """The LogCorrupt for damage at `line`, telling a person what the run can still do."""
        return LogCorrupt(
            f"run {run_id!r} is corrupt: {self.path(run_id, EVENTS)} line {line} is damaged ({reason}). "
            f"The run is read-only: nothing is written after a damaged line. Restore the file from a "
            f"backup, or keep the events before that line with `loopengt check --repair {run_id}`",
            run_id=run_id,
            line=line,
            reason=reason,
            good_end=good_end,
            good_seq=good_seq,
        )

    def tail(self, run_id: str, fd: int, size: int, cache: RunCache | None) -> tuple[int, int]:
        """(clean end offset, last seq) read from the end of the file: O(1) in the log's length.

        If the last terminated line belongs to an unfinished batch, it walks back over that batch's lines
        to the end of the batch before. Only when a line it reads fails its checksum (or the batch walk
        meets something odd) does it fall back to a forward scan, so the answer (and any corruption
        report) is exactly what `load` would see.
        """
        if size == 0:
            return 0, 0
        nl = self.rfind_newline(fd, size)
        end = nl + 1  # anything after the last newline is a torn fragment
        if end == 0:
            return 0, 0
        try:
            obj = self.line_ending_at(fd, end)
            seq = seq_of(obj)
            batch_end = end_of(obj, seq)
            if batch_end == seq:
                return end, seq
            return self.before_batch(fd, end, seq, batch_end)
        except BadRecord:
            prev_seq, start = cache.best_point(NO_LIMIT) if cache is not None else (0, 0)
            if start > size:
                prev_seq, start = 0, 0
            scan = self.scan(run_id, fd, start, prev_seq, size, after=NO_LIMIT, limit=None)
            return scan.end, scan.last_seq

    def before_batch(self, fd: int, end: int, seq: int, batch_end: int) -> tuple[int, int]:
        """(offset, seq) just before the unfinished batch whose line `seq` ends at `end`.

        Walks back over that batch's lines only (one append's worth); anything unexpected raises
        BadRecord so that `tail` falls back to a forward scan, which names the damage.
        """
        while True:
            start = self.rfind_newline(fd, end - 1) + 1
            if start == 0:
                if seq != 1:
                    raise BadRecord("the log does not start at seq 1")
                return 0, 0
            obj = self.line_ending_at(fd, start)
            prev = seq_of(obj)
            prev_end = end_of(obj, prev)
            if prev != seq - 1:
                raise BadRecord("seqs are not consecutive")
            if prev_end != batch_end:
                if prev_end != prev:
                    raise BadRecord("a batch broken off mid-log")
                return start, prev
            end, seq = start, prev

    def crc_range(self, fd: int, start: int, end: int, crc: int) -> int:
        """`crc` carried on over the log's bytes [start, end); BadRecord if the file ends before `end`."""
        pos = start
        while pos < end:
            chunk = self.pread(fd, min(CHUNK, end - pos), pos)
            if not chunk:
                raise BadRecord("the log is shorter than the snapshot says")
            crc = zlib.crc32(chunk, crc)
            pos += len(chunk)
        return crc
