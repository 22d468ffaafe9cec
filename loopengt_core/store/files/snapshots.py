"""Snapshots of a run's state: reading `snapshot.json` and checking that it fits the log behind it.

`snapshot.json` holds {"seq","offset","prefix_crc","state","crc"}: the state after event `seq`, which
ends at byte `offset` of events.jsonl, so loading seeks instead of scanning; `prefix_crc` is the CRC-32
of the log's bytes before `offset`, so the first load in a process checks those bytes in bulk (one
sequential read, no parsing). A damaged or mismatched snapshot is ignored: the log alone rebuilds state.
`write_snapshot` replaces it atomically (`FileStore.save_snapshot` finds the offset and the prefix CRC).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.store.files.faults import Faults
from loopengt_core.store.files.fsio import fsync_dir, io_error, write_new_file
from loopengt_core.store.files.logreader import LogReader
from loopengt_core.store.files.records import SNAPSHOT, TMP_PREFIX, BadRecord, seal, seq_of, unseal
from loopengt_core.store.files.runcache import RunCache


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as read: `offset` -1 when it fits the log but its offset did not."""

    seq: int
    offset: int
    state: dict[str, Any]
    prefix_crc: int | None = None  # None: written before snapshots carried it


def read_snapshot(reader: LogReader, run_dir: Path) -> Snapshot | None:
    """The snapshot if present and intact; a damaged one is ignored (the log alone rebuilds state)."""
    try:
        raw = (run_dir / SNAPSHOT).read_bytes()
    except FileNotFoundError:
        return None
    reader.bytes_read += len(raw)
    try:
        obj = unseal(raw.rstrip(b"\n"))
    except BadRecord:
        return None
    seq, offset, state = obj.get("seq"), obj.get("offset"), obj.get("state")
    prefix_crc = obj.get("prefix_crc")
    if (
        not (isinstance(seq, int) and isinstance(offset, int) and isinstance(state, dict))
        or min(seq, offset) < 0
        or not (prefix_crc is None or isinstance(prefix_crc, int))
    ):
        return None
    return Snapshot(seq, offset, state, prefix_crc)


def snapshot_matches(reader: LogReader, fd: int, snap: Snapshot, size: int) -> bool:
    """Whether the line ending at the snapshot's offset is event `snap.seq` (cheap: one line)."""
    if snap.seq == 0:
        return snap.offset == 0
    if not 0 < snap.offset <= size or reader.pread(fd, 1, snap.offset - 1) != b"\n":
        return False
    try:
        return seq_of(reader.line_ending_at(fd, snap.offset)) == snap.seq
    except BadRecord:
        return False


def prefix_crc(reader: LogReader, run_id: str, fd: int, cache: RunCache | None, offset: int) -> int:
    """CRC-32 of the log's bytes before `offset`, carried on from the last known-good prefix.

    A writer loads the run (checking the log) before it snapshots, so only the bytes appended since
    the previous snapshot are read here: one snapshot interval, not the whole log.
    """
    start, crc = cache.prefix if cache is not None and cache.prefix[0] <= offset else (0, 0)
    try:
        return reader.crc_range(fd, start, offset, crc)
    except BadRecord as exc:
        raise InvalidArgument(f"run {run_id!r}: cannot snapshot at byte {offset}: {exc}") from None


def prefix_holds(reader: LogReader, fd: int, cache: RunCache | None, snap: Snapshot) -> bool:
    """Whether the log's bytes behind the snapshot are those it was taken over (once per process)."""
    if cache is not None and cache.verified >= snap.offset:
        return True
    if snap.prefix_crc is None:
        return False  # an older snapshot: scan the lines once instead
    try:
        return reader.crc_range(fd, 0, snap.offset, 0) == snap.prefix_crc
    except BadRecord:
        return False


def write_snapshot(
    run_dir: Path, seq: int, *, offset: int, prefix_crc: int, state: dict[str, Any], faults: Faults
) -> None:
    """Write a temp file, fsync, rename over snapshot.json, fsync the directory: a crash at any point
    leaves the old snapshot or the new one whole (crash points `snapshot.after_temp`, `.after_rename`)."""
    data = seal({"seq": seq, "offset": offset, "prefix_crc": prefix_crc, "state": state})
    tmp = run_dir / f"{TMP_PREFIX}snapshot-{uuid.uuid4().hex}.json"
    try:
        write_new_file(tmp, data)
        if faults.point is not None:
            faults.fault("snapshot.after_temp")
        os.replace(tmp, run_dir / SNAPSHOT)
        if faults.point is not None:
            faults.fault("snapshot.after_rename")
        fsync_dir(run_dir)
    except OSError as exc:
        raise io_error(exc, f"saving the snapshot of run {run_dir.name!r}") from exc
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
