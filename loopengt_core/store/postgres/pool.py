"""The PostgreSQL store's connections: a pool opened on first use, the connection a call runs on (the
one this thread's `lock()` holds, else a pooled one), and driver errors turned into loopengt errors.

Only the errors of `loopengt_core.store.errors` leave the store (a driver error becomes StoreIOError);
messages name the server, never the password.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound, StoreConflict
from loopengt_core.store.errors import StoreIOError
from loopengt_core.store.postgres.connection import (
    CONNECT_TIMEOUT,
    POOL_TIMEOUT,
    check_connection,
    describe,
    durable_options,
)
from loopengt_core.store.postgres.schema import Connection


class Connections:
    """The connections of one store: `pool_size` bounds the pooled ones; `where` names the server."""

    def __init__(self, dsn: str, params: dict[str, Any], pool_size: int) -> None:
        """`params`: the parsed DSN (its password is only ever used to blank it out of messages)."""
        self.pool_size = pool_size
        self.where = describe(params)
        self._dsn = dsn
        self._password = str(params.get("password") or "")
        self._connect_kwargs: dict[str, Any] = {"autocommit": True, "options": durable_options(params)}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = CONNECT_TIMEOUT
        self._mutex = threading.Lock()
        self._pool: ConnectionPool[Connection] | None = None
        self._local = threading.local()

    def error(self, exc: psycopg.Error, what: str, run_id: str | None) -> LoopengtError:
        """The `loopengt_core.model.errors` form of a driver error; the message never includes the password."""
        if isinstance(exc, pg_errors.UniqueViolation):
            return StoreConflict(
                f"{what}: another writer stored the same key first; reload and retry", run_id=run_id
            )
        if isinstance(exc, pg_errors.ForeignKeyViolation):
            return NotFound(f"{what}: no such run in the store at {self.where}", run_id=run_id)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if self._password:
            detail = detail.replace(self._password, "***")
        if isinstance(exc, psycopg.DataError):
            return InvalidArgument(f"{what}: PostgreSQL refused a value: {detail}", run_id=run_id)
        if isinstance(exc, PoolTimeout):
            detail = (
                f"no connection within {POOL_TIMEOUT:g}s (is the server up? are all {self.pool_size} "
                "pooled connections busy?)"
            )
        return StoreIOError(f"PostgreSQL store at {self.where}: {what} failed: {detail}", run_id=run_id)

    @contextmanager
    def translate(self, what: str, run_id: str | None = None) -> Iterator[None]:
        """Turn any psycopg error raised in the block into a LoopengtError."""
        try:
            yield
        except psycopg.Error as exc:
            raise self.error(exc, what, run_id) from exc

    def connect(self) -> Connection:
        """A new connection outside the pool (schema migration, LISTEN)."""
        return psycopg.connect(self._dsn, **self._connect_kwargs)

    def get_pool(self) -> ConnectionPool[Connection]:
        """The pool, opened on first use and again after `close()`."""
        with self._mutex:
            if self._pool is None:
                pool: ConnectionPool[Connection] = ConnectionPool(
                    self._dsn,
                    kwargs=self._connect_kwargs,
                    min_size=1,
                    max_size=self.pool_size,
                    open=False,
                    check=check_connection,  # a server restart costs a reconnect, not an error
                    timeout=POOL_TIMEOUT,
                    name=f"loopengt {self.where}",
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def held(self) -> list[Connection]:
        """This thread's connections held by `lock()`, innermost last."""
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return cast("list[Connection]", held)

    @contextmanager
    def conn(self) -> Iterator[Connection]:
        """The connection a call runs on: the one this thread's `lock()` holds, else a pooled one."""
        held = self.held()
        if held:
            yield held[-1]
            return
        with self.get_pool().connection() as conn:
            yield conn

    def not_found(self, run_id: str) -> NotFound:
        """The NotFound for a run this store does not hold."""
        return NotFound(f"no run {run_id!r} in the store at {self.where}", run_id=run_id)

    def close(self) -> None:
        """Close the pool; it reopens on the next call."""
        with self._mutex:
            pool, self._pool = self._pool, None
        if pool is not None:
            with self.translate("closing the connection pool"):
                pool.close()
