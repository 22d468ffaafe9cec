"""Where a run's files are, and the only ways the file store opens them: never through a symlink.

A run directory or log that is a symlink is refused as foreign: the store never follows a link out of
itself. Every use of a run's files passes `own_dir`, which is also where a deferred fsync is waited for
(see `loopengt_core.store.files.deferred`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from pathlib import Path

from loopengt_core.model.errors import NotFound, StoreConflict, StoreCorrupt
from loopengt_core.store import check_id
from loopengt_core.store.files.deferred import DeferredSyncs
from loopengt_core.store.files.faults import Faults
from loopengt_core.store.files.fsio import fsync_dir, io_error, write_new_file
from loopengt_core.store.files.records import CHECKPOINTS, EVENTS, LOCK, SPEC, TMP_PREFIX


class RunFiles:
    """The runs folder of one store: `<root>/runs/<run_id>/`."""

    def __init__(self, root: Path, deferred: DeferredSyncs) -> None:
        """`deferred`: the store's pending fsyncs, waited for before a run's files are used."""
        self.root = root
        self.runs_dir = root / "runs"
        self._runs_prefix = os.path.join(self.runs_dir, "")  # str paths on the hot path: pathlib costs µs
        self._deferred = deferred

    def run_dir(self, run_id: str) -> Path:
        """The run's directory (its id checked first)."""
        return self.runs_dir / check_id(run_id)

    def path(self, run_id: str, name: str) -> str:
        """A file of the run as a plain string (the per-step calls skip pathlib)."""
        return f"{self._runs_prefix}{check_id(run_id)}/{name}"

    def not_found(self, run_id: str) -> NotFound:
        """The NotFound for a run this store does not hold."""
        return NotFound(f"no run {run_id!r} in the store at {self.root}", run_id=run_id)

    def foreign(self, run_id: str, path: str) -> StoreCorrupt:
        """The error for a run file that is a symbolic link."""
        return StoreCorrupt(
            f"run {run_id!r}: {path} is a symbolic link, and the store does not follow links out of "
            f"{self.runs_dir}; the run is refused as foreign: move its files into the store in place of "
            "the link, or remove the link",
            run_id=run_id,
        )

    def own_dir(self, run_id: str) -> None:
        """Refuse a run directory that is a symlink (one lstat); NotFound if there is none.

        Every use of a run's files passes here, so this is also where a deferred fsync is waited for.
        """
        path = f"{self._runs_prefix}{check_id(run_id)}"
        if self._deferred.unsynced:
            self._deferred.wait_synced(run_id)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise self.not_found(run_id) from None
        if stat.S_ISLNK(mode):
            raise self.foreign(run_id, path)

    def open_log(self, run_id: str, flags: int) -> int:
        """An fd on the run's own log (neither it nor its directory a symlink); NotFound if there is none."""
        self.own_dir(run_id)
        path = self.path(run_id, EVENTS)
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise self.not_found(run_id) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.foreign(run_id, path) from None
            raise

    def open_events(self, run_id: str) -> int:
        """A read-only fd on the run's log; NotFound if the run does not exist."""
        return self.open_log(run_id, os.O_RDONLY)

    def checkpoints_dir(self, run_id: str) -> Path:
        """The run's checkpoints directory, refused as foreign when it is a symlink (like the log)."""
        self.own_dir(run_id)
        path = self.run_dir(run_id) / CHECKPOINTS
        if path.is_symlink():
            raise self.foreign(run_id, str(path))
        return path


def fill_run_dir(tmp: Path, spec: bytes, log: bytes, created_ns: int) -> None:
    """Write every file of a new run into `tmp` (spec.yaml's mtime: `created_ns`) and make them all durable."""
    write_new_file(tmp / SPEC, spec, mtime_ns=created_ns)
    write_new_file(tmp / EVENTS, log)
    write_new_file(tmp / LOCK, b"")
    (tmp / CHECKPOINTS).mkdir()
    fsync_dir(tmp)


def create_run_dir(
    files: RunFiles, run_id: str, *, spec: bytes, log: bytes, created_ns: int, faults: Faults
) -> None:
    """Build the run in a temp directory and rename it into place, so it appears whole or not at all
    (crash point `create.before_rename`). StoreConflict when the run exists."""
    final = files.run_dir(run_id)
    if final.exists():
        raise StoreConflict(f"run {run_id!r} already exists", run_id=run_id)
    try:
        if not files.runs_dir.is_dir():
            files.runs_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(files.root)
        tmp = files.runs_dir / f"{TMP_PREFIX}{run_id}-{uuid.uuid4().hex}"
        tmp.mkdir()
    except OSError as exc:
        raise io_error(exc, f"creating run {run_id!r}") from exc
    try:
        fill_run_dir(tmp, spec, log, created_ns)
        if faults.point is not None:
            faults.fault("create.before_rename")
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if final.exists():
                raise StoreConflict(f"run {run_id!r} already exists", run_id=run_id) from None
            raise io_error(exc, f"creating run {run_id!r}") from exc
        fsync_dir(files.runs_dir)
    except OSError as exc:
        raise io_error(exc, f"creating run {run_id!r}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
