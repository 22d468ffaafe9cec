"""Connecting to PostgreSQL: the session options every connection carries, the pool's liveness check, and
the server named in messages (`postgresql://user@host:port/dbname`, never the password).

Durability: every session of the store runs with `synchronous_commit = on` (set when it connects), so a
commit is acknowledged only once its WAL is written, even on a server whose default is off; a killed
PostgreSQL loses no acknowledged step (tests/durability/pgkill_suite.py).
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from loopengt_core.store import DatabaseProbe
from loopengt_core.store.errors import StoreIOError
from loopengt_core.store.postgres.schema import SCHEMA_VERSION, Connection

CONNECT_TIMEOUT = 10  # seconds, unless the DSN says otherwise
POOL_TIMEOUT = 30.0  # seconds a call waits for a free pooled connection


def durable_options(params: dict[str, Any]) -> str:
    """The DSN's `options` plus `-c synchronous_commit=on` and read committed, last so that they win.

    An acknowledged step must survive the database server's crash: a commit has to wait for its WAL
    whatever the server's (or the role's, or the DSN's) default says. Set in the startup packet, it costs
    no round trip and outranks `ALTER ROLE/DATABASE ... SET`. Read committed gives every statement its own
    snapshot, which the tail read after the lock needs (see `loopengt_lock_tail`).
    """
    given = str(params.get("options") or "").strip()
    return f"{given} -c synchronous_commit=on -c default_transaction_isolation=read\\ committed".strip()


def check_connection(conn: Connection) -> None:
    """The pool's check before lending a connection, without a round trip when the socket is quiet.

    An idle connection gets nothing from the server unless something happened to the session: a server
    that was killed or restarted closes the socket (readable: EOF), an admin's terminate sends an error
    first. Only then is the connection probed with an empty query, which raises if it is broken and so
    makes the pool replace it.
    """
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise psycopg.OperationalError("the pooled connection is not idle")
    try:
        ready, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        ready = [True]
    if ready:
        ConnectionPool.check_connection(conn)


def describe(params: dict[str, Any]) -> str:
    """`postgresql://user@host:port/dbname` for messages: where the store is, without the password."""
    user = params.get("user") or ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port")
    dbname = params.get("dbname") or user
    return f"postgresql://{user + '@' if user else ''}{host}{':' + str(port) if port else ''}/{dbname}"


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, as shown to a person (no password); a DSN that does not parse is not quoted."""
    try:
        return describe(conninfo_to_dict(dsn))
    except psycopg.Error:  # the parser's message may quote the password
        return "postgresql://(unparseable DSN)"


def probe(dsn: str, *, connect_timeout_seconds: int = 5) -> DatabaseProbe:
    """Connect and read the schema version; creates and migrates nothing (the server does that on start).

    Raises:
        StoreIOError: cannot connect or read (the message names the server, never the password).
    """
    where = describe_dsn(dsn)
    try:
        password = str(conninfo_to_dict(dsn).get("password") or "")
    except psycopg.Error:  # the parser's (and the driver's) message may quote the password
        raise StoreIOError(
            f"{where}: cannot connect (the URL does not parse; not shown, as it may hold a password)"
        ) from None
    try:
        with psycopg.connect(dsn, connect_timeout=connect_timeout_seconds, autocommit=True) as conn:
            server = conn.info.server_version
            row = conn.execute("SELECT to_regclass('loopengt_schema_version') IS NOT NULL").fetchone()
            current = None
            if row is not None and row[0]:
                got = conn.execute("SELECT max(version) FROM loopengt_schema_version").fetchone()
                current = None if got is None or got[0] is None else int(got[0])
    except psycopg.Error as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if password:
            detail = detail.replace(password, "***")
        raise StoreIOError(f"{where}: cannot connect ({detail})") from None
    return DatabaseProbe(where, f"PostgreSQL {server // 10000}.{server % 10000}", current, SCHEMA_VERSION)
