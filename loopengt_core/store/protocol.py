"""The store protocol (`Store`) and the capability protocols some backends add (see `loopengt_core.store`)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loopengt_core.model.events import AnyEvent, Event
from loopengt_core.store.values import Checkpoint, LoadedRun, Repair


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

    `async_submit.quick` lets such a transition run on the MCP event loop, which it may do only because
    `try_lock` never waits: a lock held elsewhere raises LockBusy and the caller goes to a worker thread.
    """

    def try_lock(self, run_id: str) -> AbstractContextManager[None]:
        """`lock`, or LockBusy at once when another thread or process holds it.

        Raises:
            LockBusy: the run's lock is held (nothing was done).
            NotFound: no such run.
        """


@runtime_checkable
class AppendAt(Protocol):
    """A store that appends a transition in one step when the caller's state is at the log's end: the
    caller decides on the state it holds (the log up to `last`) without the run's lock, and the store
    takes the lock only while it checks that the log still ends at `last` and appends (PostgreSQL: one
    round trip instead of lock, append, unlock). Two writers can never both append after the same seq.
    When the log moved on, the caller decides again under `lock`, so only a decision with no effects
    beyond its events may go this way.
    """

    def holding(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the run against this process's other threads (no lock elsewhere): the block's decision
        and `append_at` see no transition of this process in between. Not re-entrant, nor within `lock`."""

    def append_at(self, run_id: str, last: int, events: Sequence[Event]) -> bool:
        """Append `events` (seqs last + 1, ...) if the run's log still ends at `last`, under the run's lock;
        False, having appended nothing, if it does not (another writer appended) or there is no run.

        Raises:
            InvalidArgument: `events` is empty or does not start at seq last + 1.
            StoreIOError: the store could not be reached (the batch may or may not be in).
        """

    def ends_at(self, run_id: str, last: int) -> bool:
        """Whether the run's log ends at `last` now (False: it moved on, or there is no run)."""


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

    def recent_sync_seconds(self) -> float | None:
        """How long the store's fsyncs took lately (None before the first): a caller defers them only
        when they take longer than handing them to a thread costs."""
        ...
