"""The store's runs folder as a whole: the runs in it (newest first), deleting one, and the temp leftovers
of crashed writers.

Only names matching the id pattern are runs; `.tmp-` names are writes (or deletions) in progress or
left by a crash, which no reader looks at and `sweep_leftovers` removes once they are old.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from loopengt_core.store import ID_PATTERN
from loopengt_core.store.files.fsio import fsync_dir, io_error, size_of
from loopengt_core.store.files.records import CHECKPOINTS, EVENTS, SPEC, TMP_PREFIX
from loopengt_core.store.files.runfiles import RunFiles


def list_runs(runs_dir: Path) -> list[str]:
    """Newest first by creation time (spec.yaml's mtime, set at creation), then by id."""
    try:
        entries = list(os.scandir(runs_dir))
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


def sweep_leftovers(
    runs_dir: Path, *, older_than_seconds: float = 3600.0, dry_run: bool = False
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
        run_dirs = list(os.scandir(runs_dir))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    places = [runs_dir]
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
                if entry.name.startswith(TMP_PREFIX) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    freed += size_of(Path(entry.path))
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


def delete_run(files: RunFiles, run_id: str, forget: Callable[[str], None]) -> None:
    """Rename the run directory to a temp name (atomic, durable), then remove it at leisure.

    `list_runs` and every lookup skip temp names, so a crash after the rename leaves only a stray
    directory, never half a run.
    """
    run_dir = files.run_dir(run_id)
    if not (run_dir / EVENTS).is_file():
        raise files.not_found(run_id)
    trash = files.runs_dir / f"{TMP_PREFIX}deleted-{run_id}-{uuid.uuid4().hex}"
    try:
        os.rename(run_dir, trash)
    except FileNotFoundError:
        raise files.not_found(run_id) from None
    except OSError as exc:
        raise io_error(exc, f"deleting run {run_id!r}") from exc
    forget(run_id)
    try:
        fsync_dir(files.runs_dir)
    except OSError as exc:
        raise io_error(exc, f"deleting run {run_id!r}") from exc
    finally:
        shutil.rmtree(trash, ignore_errors=True)
