"""Durable file writes for the file store: whole writes, fsynced files and directories, OSError mapping.

Every write the store acknowledges goes through here, so the fsync discipline (file, then the directory
that names it) lives in one place. `datasync` is looked up at call time (`fsio.datasync`), so a benchmark
that only builds stores can swap it for a no-op.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from loopengt_core.store import StoreIOError

_P = ParamSpec("_P")
_R = TypeVar("_R")

datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def write_all(fd: int, data: bytes) -> None:
    """One write for the whole buffer; loops only on a short write (signals, nearly full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_new_file(path: Path, data: bytes, *, mtime_ns: int | None = None) -> None:
    """Create `path` (must not exist), write it fully and flush it (and a given mtime) to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data)
        if mtime_ns is None:
            datasync(fd)
        else:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
            os.fsync(fd)  # fdatasync may skip the mtime, which here is data
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames and new names in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def size_of(path: Path) -> int:
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


def io_error(exc: OSError, what: str) -> StoreIOError:
    """The StoreIOError for an OSError met while doing `what`, naming the file when known."""
    where = f" {exc.filename}:" if exc.filename else ""
    return StoreIOError(f"file store: {what} failed:{where} {exc.strerror or exc}")


def guard(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Safety net: turn any OSError that escaped the specific handlers into a StoreIOError."""

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                raise io_error(exc, what) from exc

        return wrapper

    return decorate
