"""One listener on a store's push feed of changed runs (PostgreSQL LISTEN/NOTIFY), shared in a process.

The store's `changes(timeout)` hands each notification to one caller, so two consumers (the MCP server's
resource notifier and the bounded waits of `get_run`) would each miss what the other took. The feed is
the one consumer: a daemon thread that passes every changed run id to each subscriber's queue and calls
`on_change` (which wakes the waits). Stores without a push feed (the file store) have none; their
waits look at the log's end instead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

from loopengt_core.model.errors import LoopengtError

log = structlog.get_logger("loopengt.changes")
RETRY_SECONDS = 1.0


class SharedChanges:
    """The process's one consumer of a store's `changes`, fanned out to subscribers."""

    def __init__(self, changes: Callable[[float], list[str]], on_change: Callable[[list[str]], None]) -> None:
        self._changes = changes
        self._on_change = on_change
        self._lock = threading.Lock()
        self._queues: list[queue.SimpleQueue[str]] = []
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def start(self) -> None:
        """Start listening (once); waits started before the first LISTEN fall back on their polls."""
        with self._lock:
            if self._thread is not None or self._closed.is_set():
                return
            self._thread = threading.Thread(target=self._listen, name="loopengt-changes", daemon=True)
        self._thread.start()

    def subscribe(self) -> Callable[[float], list[str]]:
        """A `changes(timeout)` of one's own, like the store's: run ids changed since the last call."""
        inbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        with self._lock:
            self._queues.append(inbox)
        self.start()

        def changes(timeout_seconds: float) -> list[str]:
            try:
                first = inbox.get(timeout=timeout_seconds)
            except queue.Empty:
                return []
            found = {first: None}
            while True:
                try:
                    found[inbox.get_nowait()] = None
                except queue.Empty:
                    return list(found)

        return changes

    def close(self) -> None:
        """Stop listening (within a second): the store is being closed."""
        self._closed.set()

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                run_ids = self._changes(1.0)
            except LoopengtError as exc:
                if not self._closed.is_set():
                    log.warning("listening_failed", error=exc.message)
                self._closed.wait(RETRY_SECONDS)
                continue
            except Exception:  # the thread must go on: waits would otherwise only poll
                log.exception("listening_failed")
                self._closed.wait(RETRY_SECONDS)
                continue
            if not run_ids:
                continue
            with self._lock:
                inboxes = list(self._queues)
            for inbox in inboxes:
                for run_id in run_ids:
                    inbox.put(run_id)
            self._on_change(run_ids)
