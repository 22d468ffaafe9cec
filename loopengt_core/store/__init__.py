"""Where runs live. `Store` is the protocol; backends (`files.py`, later `postgres.py`) implement it.

This module imports no backend, so the engine and the service depend only on the protocol.
Stores see events and JSON-able state; they never interpret them. Every backend raises only
`loopengt_core.errors` exceptions (StoreConflict, StoreCorrupt, NotFound, InvalidArgument):
no OSError or driver error reaches the service.

The protocol is synchronous on purpose: a transition is a short critical section under an OS-level
lock, and the MCP layer runs it on a worker thread, so waiting for a lock or an fsync never blocks
the event loop, while the CLI calls the same code directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from loopengt_core.errors import InvalidArgument, StoreConflict
from loopengt_core.events import AnyEvent, Event

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class LockBusy(Exception):
    """A run's lock is held elsewhere and the caller asked not to wait (`FileStore.try_lock`)."""


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


@runtime_checkable
class Store(Protocol):
    """Durable home of runs. Implementations must pass `tests/store_contract.py`."""

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
        the two writes); nothing if there is none. Callers hold `lock(run_id)`."""

    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """Raises NotFound naming the run's checkpoints."""

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """The run's checkpoints, oldest first."""

    def list_runs(self) -> list[str]:
        """Run ids, newest first."""

    def exists(self, run_id: str) -> bool: ...

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

    def close(self) -> None: ...


def open_store(location: str | None) -> Store:
    """The store named by `--store`: a directory (default `.loopengt`) or a postgresql:// URL.

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
    if target.startswith(("postgresql://", "postgres://")):
        from loopengt_core.store.postgres import PostgresStore  # imports psycopg only when asked for

        return PostgresStore(target, snapshot_every=every)
    from loopengt_core.store.files import FileStore

    return FileStore(target, snapshot_every=every)
