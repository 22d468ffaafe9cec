"""Repair's file operations: copy the good head of a damaged log, set aside checkpoints past the cut.

`FileStore.repair` (`loopengt check --repair`, only at a person's request) finds the damage, calls this
to write the log's good bytes, and renames the result into place, keeping the original beside it;
checkpoints past the cut are renamed aside with the same suffix, so nothing is deleted.
"""

from __future__ import annotations

import os
from pathlib import Path

from loopengt_core.store.files.checkpoints import checkpoint_ids
from loopengt_core.store.files.fsio import fsync_dir, write_all
from loopengt_core.store.files.logreader import CHUNK, LogReader
from loopengt_core.store.files.records import CHECKPOINTS, BadRecord, unseal


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
