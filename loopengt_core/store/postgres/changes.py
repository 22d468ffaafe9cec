"""Change notifications of the PostgreSQL store: LISTEN on one connection of its own, outside the pool.

Every write that adds rows sends `pg_notify('loopengt_changes', '<run_id>')` in the same statement or
transaction, which PostgreSQL delivers only on commit; `changes()` waits for those, so servers on any
number of machines see each other's steps without polling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.store import ID_PATTERN
from loopengt_core.store.postgres.pool import Connections
from loopengt_core.store.postgres.schema import CHANNEL, Connection


class Listener:
    """The listening connection of one store, opened by the first `changes()` call."""

    def __init__(self, conns: Connections) -> None:
        """Connect through `conns` (a connection of its own, not a pooled one)."""
        self._conns = conns
        self._listen_mutex = threading.Lock()
        self._listener: Connection | None = None
        self._listened = False

    def changes(self, timeout_seconds: float, list_runs: Callable[[], list[str]]) -> list[str]:
        """Run ids whose log changed (a run created or appended to by any instance on this database).

        Waits up to `timeout_seconds` for the first notification and returns it with any others already
        received, each id once; [] on timeout. The first call starts listening (on a connection of its own,
        outside the pool) and changes before it are not reported; later ones queue on that connection
        between calls. If the connection was lost, the next call reconnects and returns every run id, since
        changes in between may have been missed. `close()` waits for a call in progress to finish.
        """
        if (
            not isinstance(timeout_seconds, int | float)
            or isinstance(timeout_seconds, bool)
            or not timeout_seconds >= 0
        ):
            raise InvalidArgument(f"timeout_seconds must be a number >= 0, not {timeout_seconds!r}")
        found: dict[str, None] = {}
        with self._listen_mutex, self._conns.translate("listening for changes"):
            conn = self._listener
            if conn is None or conn.closed:
                conn = self._conns.connect()
                try:
                    conn.execute(f"LISTEN {CHANNEL}")
                except BaseException:
                    conn.close()
                    raise
                self._listener = conn
                if self._listened:
                    found.update(dict.fromkeys(list_runs()))
                self._listened = True
            try:
                waits = [0.0] if found else [float(timeout_seconds), 0.0]  # the first, then what else arrived
                for wait in waits:
                    for notify in conn.notifies(timeout=wait, stop_after=None if wait == 0 else 1):
                        if ID_PATTERN.fullmatch(notify.payload):
                            found[notify.payload] = None
            except BaseException:
                conn.close()
                raise
        return list(found)

    def close(self) -> None:
        """Close the listening connection; the next `changes()` reconnects (and reports every run)."""
        with self._listen_mutex:
            listener, self._listener = self._listener, None
            self._listened = False
        if listener is not None:
            with self._conns.translate("closing the listening connection"):
                listener.close()
