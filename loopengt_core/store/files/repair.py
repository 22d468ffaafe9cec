"""Repair of a damaged log (`loopengt check --repair`, only at a person's request): cut it after the last
whole batch before its first damaged line, keeping the original beside it; nothing is deleted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from loopengt_core.store import Repair
from loopengt_core.store.files.checkpoints import checkpoint_ids
from loopengt_core.store.files.fsio import fsync_dir, write_all
from loopengt_core.store.files.locking import RunLocks
from loopengt_core.store.files.logreader import CHUNK, NO_LIMIT, LogCorrupt, LogReader
from loopengt_core.store.files.records import (
    CHECKPOINTS,
    EVENTS,
    SNAPSHOT,
    TASKS,
    TMP_PREFIX,
    BadRecord,
    unseal,
)
from loopengt_core.store.files.runfiles import RunFiles


def copy_and_count(reader: LogReader, fd: int, target: Path, keep: int, size: int) -> int:
    """Write the log's first `keep` bytes to a new durable file; return the lines after them."""
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        pos = 0
        while pos < keep:
            chunk = reader.pread(fd, min(CHUNK, keep - pos), pos)
            write_all(out, chunk)
            pos += len(chunk)
        os.fsync(out)
    finally:
        os.close(out)
    lines, pos = 0, keep
    while pos < size:
        chunk = reader.pread(fd, min(CHUNK, size - pos), pos)
        lines += chunk.count(b"\n")
        pos += len(chunk)
    return lines + (1 if size > keep and reader.pread(fd, 1, size - 1) != b"\n" else 0)


def set_aside_checkpoints(run_dir: Path, kept_seq: int, suffix: str) -> list[str]:
    """Rename checkpoints past `kept_seq` (or unreadable) to `<id>.json<suffix>`; their ids."""
    aside = []
    for cid in checkpoint_ids(run_dir):
        path = run_dir / CHECKPOINTS / f"{cid}.json"
        try:
            seq = unseal(path.read_bytes().rstrip(b"\n")).get("seq")
        except (BadRecord, FileNotFoundError):
            seq = None
        if not isinstance(seq, int) or seq > kept_seq:
            os.rename(path, path.with_name(f"{cid}.json{suffix}"))
            aside.append(cid)
    if aside:
        fsync_dir(run_dir / CHECKPOINTS)
    return aside


def repair_run(
    run_id: str, files: RunFiles, reader: LogReader, locks: RunLocks, forget: Callable[[str], None]
) -> Repair | None:
    """Cut the log after the last whole batch before its first damaged line; None if nothing is damaged.

    Only at a person's request (`loopengt check --repair`). The original log stays beside the new one
    as `events.jsonl.corrupt-<UTC time>` (a hard link: the same file under a second name), the new log
    replaces it by rename, the snapshot is removed (the next load folds the log) and checkpoints past
    the cut are renamed aside with the same suffix, so nothing is deleted.
    """
    run_dir = files.run_dir(run_id)
    with locks.lock(run_id):
        fd = files.open_events(run_id)
        try:
            size = os.fstat(fd).st_size
            try:
                reader.scan(run_id, fd, 0, 0, size, after=NO_LIMIT, limit=None)
                return None
            except LogCorrupt as exc:
                damage = exc
            suffix = f".corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
            tmp = run_dir / f"{TMP_PREFIX}{EVENTS}-{uuid.uuid4().hex}"
            removed_lines = copy_and_count(reader, fd, tmp, damage.good_end, size)
        finally:
            os.close(fd)
        try:
            os.link(run_dir / EVENTS, run_dir / f"{EVENTS}{suffix}")
            (run_dir / TASKS).unlink(missing_ok=True)  # it may index cut events: rebuilt on demand
            os.replace(tmp, run_dir / EVENTS)
            (run_dir / SNAPSHOT).unlink(missing_ok=True)
            aside = set_aside_checkpoints(run_dir, damage.good_seq, suffix)
            fsync_dir(run_dir)
        finally:
            tmp.unlink(missing_ok=True)
            forget(run_id)
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
