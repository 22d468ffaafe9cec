"""Read-only access to runs for whatever watches or only reads them: `loopengt show --follow`, the MCP
server's change notifications and run context, the editor hooks, the headless driver's progress lines.

These must not go through `Runs`, whose reads take the run's lock and may append (deadline ticks), so
that watching could change what is watched. They read the log through this instead, which offers only
reads and hides which store it is: a store with a `ChangeFeed` (PostgreSQL) pushes changes; any other is
polled through `version(run_id)`, a cheap token.
"""

from __future__ import annotations

import time

from loopengt_core.model.events import AnyEvent
from loopengt_core.store import ChangeFeed, LoadedRun, Store


class RunReader:
    """Reads runs without locking or writing them; one per store handle (it shares the handle's lifetime)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def pushes_changes(self) -> bool:
        """Whether `changes` reports which runs changed (else it only waits, and callers poll versions)."""
        return isinstance(self._store, ChangeFeed)

    def load(self, run_id: str) -> LoadedRun:
        """The run's spec, newest snapshot and the events after it (what a fold of the run needs).

        Raises:
            NotFound: no such run.
            StoreCorrupt: the log is damaged before its last line.
        """
        return self._store.load(run_id)

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """The run's events with seq > `after`, in order, at most `limit`.

        Raises:
            NotFound: no such run.
        """
        return self._store.events(run_id, after=after, limit=limit)

    def version(self, run_id: str) -> str:
        """A token that changes whenever the run's log changes.

        Raises:
            NotFound: no such run.
        """
        return self._store.version(run_id)

    def exists(self, run_id: str) -> bool:
        """Whether the store has the run.

        Raises:
            InvalidArgument: a malformed run id.
        """
        return self._store.exists(run_id)

    def list_runs(self) -> list[str]:
        """Run ids, newest first."""
        return self._store.list_runs()

    def changes(self, timeout_seconds: float) -> list[str] | None:
        """Wait up to `timeout_seconds` for a change: the ids of the runs changed anywhere, or None when the
        store cannot say (it was only a wait: compare versions).

        With a change feed, the first call starts listening and returns what arrives before the timeout,
        so call it once before the first read to miss no change in between.
        """
        if isinstance(self._store, ChangeFeed):
            return self._store.changes(timeout_seconds)
        time.sleep(timeout_seconds)
        return None

    def close(self) -> None:
        """Close the store handle (connections, descriptors); it reopens them if used again."""
        self._store.close()
