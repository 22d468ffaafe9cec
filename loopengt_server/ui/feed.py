"""Which runs changed, made by any process, told to the web view's open pages within a fraction of a second.

One watcher thread per view, running only while a page listens. A store with `changes()` (PostgreSQL
LISTEN/NOTIFY) wakes it with the run ids that changed, across processes and servers; otherwise it
compares each watched run's version token (file store: the log's size and mtime, one stat) every
`poll_seconds`, the way `show --follow` does. It never reads a run's events: the page's stream reads
the new ones when told.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from loopengt_core.model.errors import LoopengtError, NotFound
from loopengt_core.service.reading import RunReader

log = logging.getLogger("loopengt.ui")
POLL_SECONDS = 0.2


class Subscription:
    """One page's interest: a run id, or None for every run (the runs list)."""

    def __init__(self, feed: Feed, run_id: str | None) -> None:
        self.feed = feed
        self.run_id = run_id
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def tell(self) -> None:
        """From the watcher thread: wake the page's stream."""
        try:
            self._loop.call_soon_threadsafe(self._changed.set)
        except RuntimeError:  # its event loop has closed: the page is gone
            self.feed.unsubscribe(self)

    async def wait(self, timeout: float) -> bool:
        """True when something changed since the last wait; False after `timeout` seconds of quiet."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    def close(self) -> None:
        """Stop receiving changes."""
        self.feed.unsubscribe(self)


class Feed:
    """Tells the web view's open pages which runs changed (see the module docstring)."""

    def __init__(self, reader: RunReader, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.reader = reader
        self.poll_seconds = poll_seconds
        self._subs: list[Subscription] = []
        self._cond = threading.Condition()
        self._versions: dict[str, str | None] = {}
        self._thread: threading.Thread | None = None
        self.closed = False
        self._pushed = reader.pushes_changes

    def subscribe(self, run_id: str | None) -> Subscription:
        """Start listening (call before reading what the page shows, so no change falls in between)."""
        sub = Subscription(self, run_id)
        with self._cond:
            if self._thread is None:
                if self._pushed:
                    self.reader.changes(0)  # start listening now: changes before the first call are not told
                self._thread = threading.Thread(target=self._watch, name="loopengt-ui-feed", daemon=True)
                self._thread.start()
            if run_id is not None and run_id not in self._versions:
                self._versions[run_id] = self._version(run_id)
            self._subs.append(sub)
            self._cond.notify_all()
        return sub

    def close(self) -> None:
        """The server is stopping: wake every stream so it ends (it checks `closed`) instead of being cut."""
        with self._cond:
            self.closed = True
            subs = list(self._subs)
        for sub in subs:
            sub.tell()

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop telling `sub` about changes (the watcher stops when nobody listens)."""
        with self._cond:
            if sub in self._subs:
                self._subs.remove(sub)

    def _watch(self) -> None:
        while True:
            with self._cond:
                while not self._subs:
                    self._cond.wait()
            try:
                changed = self._next()
            except LoopengtError as exc:
                log.warning("watching the store failed: %s", exc)
                time.sleep(1.0)
                continue
            if changed:
                self._tell(changed)

    def _next(self) -> set[str]:
        """Run ids changed since the last call (waits up to `poll_seconds`)."""
        if self._pushed:
            return set(self.reader.changes(self.poll_seconds) or ())
        time.sleep(self.poll_seconds)
        with self._cond:
            everything = any(s.run_id is None for s in self._subs)
            watched = {s.run_id for s in self._subs if s.run_id is not None}
        if everything:
            watched |= set(self.reader.list_runs())
        changed = set()
        for run_id in watched:
            version = self._version(run_id)
            if self._versions.get(run_id, "") != version:
                self._versions[run_id] = version
                changed.add(run_id)
        return changed

    def _version(self, run_id: str) -> str | None:
        try:
            return self.reader.version(run_id)
        except NotFound:
            return None

    def _tell(self, changed: set[str]) -> None:
        with self._cond:
            subs = [s for s in self._subs if s.run_id is None or s.run_id in changed]
        for sub in subs:
            sub.tell()
