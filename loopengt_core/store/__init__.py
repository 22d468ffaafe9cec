"""Where runs live. `Store` is the protocol; `files/` (the default) and `postgres/` implement it.

This module imports no backend, so the engine and the service depend only on the protocol.
Stores see events and JSON-able state; they never interpret them. Every backend raises only the errors
of `loopengt_core.store.errors` (StoreConflict, StoreCorrupt, StoreIOError, NotFound, InvalidArgument,
and LockBusy from `try_lock`): no OSError or driver error reaches the service.

What only some backends can do is a capability, a small protocol of its own that a caller checks with
`isinstance` (never `getattr`):

    LocalLocking     try_lock: the lock is local to this machine, so trying it never waits (file store)
    DirectoryBacked  root: the runs live in a directory here, which a workspace snapshot leaves out (file store)
    Sweepable        sweep_leftovers: temp files of crashed writers can be removed (file store)
    Repairable       repair: a damaged log can be cut after its last good batch (file store)
    ChangeFeed       changes: runs changed by any instance are pushed, not polled (PostgreSQL)

`tests/test_store_contract.py` runs every backend through the protocol and each capability it has.

The protocol is synchronous on purpose: a transition is a short critical section under an OS-level
lock, and the MCP layer runs it on a worker thread, so waiting for a lock or an fsync never blocks
the event loop, while the CLI calls the same code directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loopengt_core.errors import InvalidArgument, StoreConflict
from loopengt_core.events import AnyEvent, Event
from loopengt_core.store.errors import LockBusy, StoreIOError

__all__ = [
    "ID_PATTERN",
    "ChangeFeed",
    "Checkpoint",
    "DatabaseProbe",
    "DirectoryBacked",
    "GroupCommit",
    "LoadedRun",
    "LocalLocking",
    "LockBusy",
    "Repair",
    "Repairable",
    "Store",
    "StoreIOError",
    "Sweepable",
    "check_batch",
    "check_checkpoint",
    "check_id",
    "describe_location",
    "is_database",
    "is_directory",
    "open_store",
    "probe_database",
]

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_id(value: object, what: str = "run_id") -> str:
    """Validate a run or checkpoint id so that no argument can leave the store directory."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"invalid {what} {str(value)[:80]!r}: use 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def check_batch(run_id: str, events: Sequence[Event]) -> None:
    """Refuse an append that is not a run of consecutive Events (every backend checks the same way)."""
    first = events[0].seq if isinstance(events[0], Event) else None
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise InvalidArgument("append takes Event objects")
        if first is not None and event.seq != first + index:
            raise StoreConflict(
                f"run {run_id!r}: the appended seqs are not consecutive ({[e.seq for e in events][:10]})",
                run_id=run_id,
            )


@dataclass(frozen=True)
class LoadedRun:
    """What loading a run reads: the frozen spec, the newest snapshot, and only the events after it."""

    run_id: str
    spec_text: str
    snapshot: dict[str, Any] | None
    snapshot_seq: int
    events: list[AnyEvent]


@dataclass(frozen=True)
class Checkpoint:
    """A named pointer to a seq plus the engine state there; `resume` can fork a run from it."""

    run_id: str
    checkpoint_id: str
    seq: int
    label: str | None
    created_at: str
    state: dict[str, Any] = field(repr=False)


def check_checkpoint(checkpoint: object) -> Checkpoint:
    """Refuse a checkpoint that is not one a store can keep (every backend checks the same way)."""
    if not isinstance(checkpoint, Checkpoint):
        raise InvalidArgument("save_checkpoint takes a Checkpoint")
    check_id(checkpoint.run_id)
    cid = check_id(checkpoint.checkpoint_id, "checkpoint_id")
    seq = checkpoint.seq
    if not (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 0
        and (checkpoint.label is None or isinstance(checkpoint.label, str))
        and isinstance(checkpoint.created_at, str)
        and isinstance(checkpoint.state, dict)
    ):
        raise InvalidArgument(
            f"checkpoint {cid!r}: seq must be an integer >= 0, label a string or None, "
            "created_at a string and state a JSON object"
        )
    return checkpoint


@dataclass(frozen=True)
class Repair:
    """What `Repairable.repair` did: the log kept up to `kept_seq`, the rest in `backup`."""

    run_id: str
    line: int
    reason: str
    kept_seq: int
    removed_lines: int
    removed_bytes: int
    backup: str
    removed_checkpoints: list[str]


@dataclass(frozen=True)
class DatabaseProbe:
    """What `probe_database` read from a PostgreSQL server without changing anything (`loopengt doctor`)."""

    where: str  # postgresql://user@host:port/dbname, never the password
    server_version: str  # e.g. "PostgreSQL 16.4"
    schema_version: int | None  # None: no loopengt tables yet (the first server to start creates them)
    known_version: int  # the schema version this loopengt migrates to


@runtime_checkable
class Store(Protocol):
    """Durable home of runs. Every backend passes `tests/test_store_contract.py`.

    Optional abilities are the capability protocols below (`LocalLocking`, `DirectoryBacked`, `Sweepable`,
    `Repairable`, `ChangeFeed`); a backend has one exactly when it is an instance of it.
    """

    snapshot_every: int
    """Events between snapshots: `Runs` saves the state after every that many, so a load replays fewer."""

    def create_run(self, run_id: str, spec_text: str, events: Sequence[Event]) -> None:
        """Create a run with its frozen spec and first events, atomically and durably.

        Raises:
            StoreConflict: a run with this id exists.
        """

    def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Append events durably (on disk before returning). `events[0].seq` must be last seq + 1.

        Raises:
            StoreConflict: the seqs do not continue the log (another writer got there first).
            NotFound: no such run.
        """

    def load(self, run_id: str) -> LoadedRun:
        """The spec, the newest snapshot and the events after it; cost does not grow with the run.

        A torn or corrupt last line (a crash mid-append) is dropped; any earlier corrupt line raises
        StoreCorrupt naming the run and line.
        """

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """Events with seq > after, in order, at most `limit`."""

    def task_events(self, run_id: str, task_id: str) -> list[AnyEvent]:
        """The events that name `task_id` (their `task_id` field), in order (what a late submission is answered
        from); the cost follows their number, not the log's length (an index by task id).

        Raises:
            NotFound: no such run.
        """

    def last_seq(self, run_id: str) -> int:
        """The seq of the last durable event (0 for none)."""

    def save_snapshot(self, run_id: str, seq: int, state: dict[str, Any]) -> None:
        """Replace the run's snapshot atomically with the state after event `seq`."""

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint durably. Raises StoreConflict if its id exists in that run.

        Callers save it before appending its `checkpoint_taken` event, so a checkpoint that cannot be
        written leaves no event behind.
        """

    def discard_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Remove a checkpoint whose event never reached the log (a failed append, or a crash between
        the two writes); nothing if there is none. Callers hold `lock(run_id)`.

        Raises:
            NotFound: no such run.
        """

    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """Raises NotFound naming the run's checkpoints."""

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """The run's checkpoints, oldest first."""

    def list_runs(self) -> list[str]:
        """Run ids, newest first."""

    def exists(self, run_id: str) -> bool:
        """Whether the store holds a run with this id."""

    def delete_run(self, run_id: str) -> None:
        """Remove the run and all it holds (spec, log, snapshot, checkpoints) at once: whole or gone.

        Callers hold `lock(run_id)` so that no transition is under way; a process that was waiting for
        the lock then finds no run. The id can be used again afterwards.

        Raises:
            NotFound: no such run.
        """

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the run exclusively (across processes) for one load-decide-append transition."""

    def version(self, run_id: str) -> str:
        """A cheap token that changes whenever the run's log changes (watchers poll it)."""

    def close(self) -> None:
        """Release connections and descriptors; the store stays usable and reopens them on demand."""


@runtime_checkable
class LocalLocking(Protocol):
    """A store whose run lock lives on this machine (flock), so a transition is a local append.

    `Runs.quick` runs such a transition on the MCP event loop, which it may do only because `try_lock`
    never waits: a lock held elsewhere raises LockBusy and the caller goes to a worker thread.
    """

    def try_lock(self, run_id: str) -> AbstractContextManager[None]:
        """`lock`, or LockBusy at once when another thread or process holds it.

        Raises:
            LockBusy: the run's lock is held (nothing was done).
            NotFound: no such run.
        """


@runtime_checkable
class DirectoryBacked(Protocol):
    """A store that keeps its runs in a directory of this machine.

    A run's workspace snapshot (git) leaves that directory out when it lies inside the work tree: the
    store's own files are not the run's code.
    """

    root: Path


@runtime_checkable
class Sweepable(Protocol):
    """A store whose crashed writers can leave temp files behind, which `loopengt prune` removes."""

    def sweep_leftovers(
        self, *, older_than_seconds: float = 3600.0, dry_run: bool = False
    ) -> tuple[int, int]:
        """Remove (or with `dry_run` only count) leftovers untouched for `older_than_seconds`;
        returns (entries, bytes). A writer still at work keeps its own."""


@runtime_checkable
class Repairable(Protocol):
    """A store that can cut a damaged log after its last good batch (`loopengt check --repair`).

    Only at a person's request: repairing drops the events after the damage (kept aside in a backup).
    """

    def repair(self, run_id: str) -> Repair | None:
        """Cut the run's log after its last whole batch; None when the log has no damaged line.

        Raises:
            NotFound: no such run.
        """


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that pushes which runs changed, across processes and machines (PostgreSQL LISTEN/NOTIFY).

    Stores without it are watched by polling `version(run_id)`.
    """

    def changes(self, timeout_seconds: float) -> list[str]:
        """Run ids created or appended to by any instance since the last call, each once; waits up to
        `timeout_seconds` for the first, [] on timeout. The first call starts listening.

        Raises:
            InvalidArgument: `timeout_seconds` is not a number >= 0.
        """


@runtime_checkable
class GroupCommit(Protocol):
    """A store whose appends can return once written, their fsyncs shared by concurrent runs' appends
    (the file store's GroupSync): the caller waits for each fsync before it answers anyone."""

    def deferring(self) -> AbstractContextManager[list[Future[None]]]:
        """Within the block, this thread's appends return once written; the yielded list collects the
        futures of their fsyncs (empty when group commit is off: appends then fsync as usual)."""
        ...

    def synced(self, run_id: str, future: Future[None]) -> None:
        """After a deferred append's fsync is done.

        Raises:
            StoreIOError: the fsync failed; the lines may be lost.
        """
        ...


def is_database(location: str) -> bool:
    """Whether a `--store` location names a PostgreSQL database rather than a directory."""
    return location.startswith(("postgresql://", "postgres://"))


def is_directory(location: str) -> bool:
    """Whether a `--store` location names a directory (the file store), not a URL (PostgreSQL, a plugin)."""
    from loopengt_core.store.plugins import scheme_of

    return scheme_of(location) is None


def describe_location(location: str) -> str:
    """A `--store` location as shown to a person: a URL without its password, a directory as given."""
    if is_directory(location):
        return location
    if not is_database(location):
        from urllib.parse import urlsplit

        parts = urlsplit(location)
        if parts.password is None:
            return location
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=f"{parts.username}@{host}").geturl()
    from loopengt_core.store.postgres import describe_dsn

    return describe_dsn(location)


def probe_database(dsn: str, *, connect_timeout_seconds: int = 5) -> DatabaseProbe:
    """Connect to a PostgreSQL store (a postgresql:// URL or libpq DSN) and read its schema version,
    creating or migrating nothing.

    Raises:
        StoreIOError: the server cannot be reached or refuses, or the DSN does not parse (the message
            names the server, never the password).
    """
    from loopengt_core.store.postgres import probe

    return probe(dsn, connect_timeout_seconds=connect_timeout_seconds)


def open_store(location: str | None) -> Store:
    """The store named by `--store`: a directory (default `.loopengt`), a postgresql:// URL, or a URL whose
    scheme a store plugin names (the `loopengt.stores` entry point group, `loopengt_core.store.plugins`).

    Raises:
        InvalidArgument: a URL whose scheme no usable plugin names (the message says which are installed,
            or why the plugin of that name is broken).

    Environment: `LOOPENGT_SNAPSHOT_EVERY` (a positive integer, default 100) is the snapshot interval of
    either backend: a run's state is saved once every that many events, so loading replays at most that
    many. Crash tests set it small to exercise snapshot replacement often. Any other value is refused
    with InvalidArgument.
    """
    target = location or ".loopengt"
    raw = os.environ.get("LOOPENGT_SNAPSHOT_EVERY", "").strip() or "100"
    if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
        raise InvalidArgument(
            f"LOOPENGT_SNAPSHOT_EVERY={raw!r}: use a positive integer (events between snapshots)"
        )
    every = int(raw)
    if is_database(target):
        from loopengt_core.store.postgres import PostgresStore  # imports psycopg only when asked for

        return PostgresStore(target, snapshot_every=every)
    from loopengt_core.store.plugins import open_plugin_store, scheme_of

    scheme = scheme_of(target)
    if scheme is not None:
        return open_plugin_store(target, scheme, snapshot_every=every)
    from loopengt_core.store.files import FileStore

    return FileStore(target, snapshot_every=every)
