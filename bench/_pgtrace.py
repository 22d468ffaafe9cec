"""Round trips and statements a durable step sends to PostgreSQL, counted from libpq's protocol trace.

Every connection the store opens in this process is traced (psycopg's `PGconn.trace`, libpq's PQtrace)
into a file of its own. A round trip is one switch from messages the client sent (F lines) to messages
the server sent back (B lines): the client flushed and then waited for an answer. Pipelined statements
sent together and answered together therefore count once. A statement is one Query (simple protocol) or
one Execute (extended protocol, prepared or not).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Trips:
    """What `steps` steps sent: round trips and statements in all, and per step."""

    steps: int
    round_trips: int
    statements: int

    @property
    def trips_per_step(self) -> float:
        return self.round_trips / self.steps

    @property
    def statements_per_step(self) -> float:
        return self.statements / self.steps


def count(lines: list[str]) -> tuple[int, int]:
    """(round trips, statements) in one connection's trace lines."""
    trips = statements = 0
    last = ""
    for line in lines:
        direction, _, rest = line.partition("\t")
        message = rest.split("\t", 2)[1] if rest.count("\t") >= 1 else ""
        if direction == "F" and message in ("Query", "Execute"):
            statements += 1
        if direction == "B" and last == "F":
            trips += 1
        if direction in ("F", "B"):
            last = direction
    return trips, statements


class Tracer:
    """Traces every psycopg connection opened while `installed`; `window()` counts what a block sent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._files: list[Path] = []
        self._handles: dict[int, Any] = {}

    def _attach(self, conn: Any) -> None:
        from psycopg import pq

        path = self.directory / f"trace-{len(self._files)}.txt"
        handle = path.open("w")
        self._files.append(path)
        self._handles[id(conn)] = handle
        conn.pgconn.trace(handle.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        self._conns.add(conn)

    def _restart(self) -> None:
        """Flush every live trace (PQuntrace flushes) and start each on a fresh file."""
        for conn in list(self._conns):
            if conn.closed:
                continue
            conn.pgconn.untrace()
            self._attach(conn)

    @contextmanager
    def installed(self) -> Iterator[Tracer]:
        """Trace the connections psycopg opens in this process within the block."""
        import psycopg

        original = psycopg.Connection.__dict__["connect"]

        def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
            conn = original.__func__(cls, *args, **kwargs)
            self._attach(conn)
            return conn

        psycopg.Connection.connect = classmethod(connect)  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            psycopg.Connection.connect = original  # type: ignore[method-assign]
            for conn in list(self._conns):
                if not conn.closed:
                    conn.pgconn.untrace()
            for handle in self._handles.values():
                handle.close()

    @contextmanager
    def window(self, steps: int, out: list[Trips]) -> Iterator[None]:
        """Count the round trips and statements of the block; appends a `Trips` to `out`."""
        begin = len(self._files)
        self._restart()  # the files from here on hold the window's traffic only
        yield
        end = len(self._files)
        self._restart()  # flushes them
        trips = statements = 0
        for path in self._files[begin:end]:
            t, s = count(path.read_text(errors="replace").splitlines())
            trips += t
            statements += s
        out.append(Trips(steps, trips, statements))
