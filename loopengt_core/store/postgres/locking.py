"""The PostgreSQL store's run lock, and the tail read that comes with it.

`lock(run_id)` takes a per-run thread lock, then a session-level `pg_advisory_lock` on a 64-bit hash of
the run id, held on one pooled connection for the whole block. Every store call the same thread makes
inside the block runs on that connection, so a transition needs one connection, not two, and a small
pool cannot deadlock with itself (a held lock never waits for a second connection from the pool).

Round trips: a transition under lock() is three (one under `holding` with `append_at`, see
`loopengt_append_at`). lock() calls `loopengt_lock_tail`, which takes the lock, says whether
the run exists and reads the events after the seq this instance last saw of the run (`tails`); the
block's first `events()` call is answered from that read (`from_prefetch`). The function's read takes its
snapshot once the lock is granted (every session runs read committed, whatever the role's default), so it
sees every append made under the lock before. Then the append, then the unlock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.store import check_id
from loopengt_core.store.postgres.pool import Connections
from loopengt_core.store.postgres.schema import Connection, lock_key
from loopengt_core.store.postgres.statements import LOCK_TAIL


class RunLocks:
    """The run locks of one store, and what it knows of each run's log end (`tails`)."""

    def __init__(self, conns: Connections) -> None:
        """Locks borrow `conns`' pooled connections."""
        self._conns = conns
        self._mutex = threading.Lock()
        self._run_locks: dict[str, threading.Lock] = {}
        self._holders: dict[str, int] = {}
        self._local = threading.local()
        # The last seq this instance saw of each run (its own appends, loads and tail reads): lock() reads
        # the events after it in the lock's own round trip, which the block's first events() call returns.
        self.tails: dict[str, int] = {}

    def prefetched(self) -> dict[str, tuple[int, list[tuple[Any, ...]]]]:
        """This thread's tails read by `lock()`: run id -> (after, the rows of the events after it)."""
        found = getattr(self._local, "prefetched", None)
        if found is None:
            found = self._local.prefetched = {}
        return cast("dict[str, tuple[int, list[tuple[Any, ...]]]]", found)

    def from_prefetch(self, run_id: str, after: int, limit: int | None) -> list[tuple[Any, ...]] | None:
        """The events after `after` from the tail this thread's lock() read, if it covers them.

        That tail was read once the lock was granted and nothing was appended since (append drops it),
        so it is the log as a query now would find it, for any writer that takes the lock."""
        if limit == 0:
            return []
        got = self.prefetched().get(run_id)
        if got is None or after < got[0]:
            return None
        rows = [row for row in got[1] if row[0] > after]
        return rows if limit is None else rows[:limit]

    def _thread_lock(self, run_id: str) -> threading.Lock:
        """The run's lock among this process's threads."""
        with self._mutex:
            return self._run_locks.setdefault(run_id, threading.Lock())

    def _not_mine(self, run_id: str, me: int) -> None:
        """InvalidArgument if this thread holds the run already (its thread lock would deadlock)."""
        if self._holders.get(run_id) == me:
            raise InvalidArgument(
                f"run {run_id!r} is already locked by this thread (lock() is not re-entrant)"
            )

    @contextmanager
    def holding(self, run_id: str) -> Iterator[None]:
        """The run's thread lock alone: this process's other transitions of it wait; nothing else does.
        `append_at` takes the advisory lock itself, for the moment of its check and insert."""
        check_id(run_id)
        me = threading.get_ident()
        self._not_mine(run_id, me)
        with self._thread_lock(run_id):
            self._holders[run_id] = me
            try:
                yield
            finally:
                del self._holders[run_id]

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run exclusively across threads, processes and machines for one transition.

        A per-run thread lock first (so threads of this process queue without taking connections), then
        `pg_advisory_lock` on a pooled connection that the block's own store calls reuse. Not re-entrant.
        """
        check_id(run_id)
        me = threading.get_ident()
        self._not_mine(run_id, me)
        key = lock_key(f"run:{run_id}")
        held = self._conns.held()
        with self._thread_lock(run_id):
            pool = None if held else self._conns.get_pool()  # an outer lock's connection serves a nested one
            with self._conns.translate(f"locking run {run_id!r}", run_id):
                conn = held[-1] if pool is None else pool.getconn()
                try:
                    exists, tail = self._lock_and_read(conn, key, run_id)
                except BaseException:
                    # The server may have granted the lock even though we never saw the answer: closing the
                    # session is the one sure way to release it, so a pooled connection never leaks a lock.
                    conn.close()
                    if pool is not None:
                        pool.putconn(conn)
                    raise
            if not exists:
                self._unlock(conn, key)
                if pool is not None:
                    pool.putconn(conn)
                raise self._conns.not_found(run_id)
            self._holders[run_id] = me
            held.append(conn)
            prefetched = self.prefetched()
            if tail is not None:
                prefetched[run_id] = tail
            try:
                yield
            finally:
                prefetched.pop(run_id, None)
                held.pop()
                del self._holders[run_id]
                self._unlock(conn, key)
                if pool is not None:
                    pool.putconn(conn)  # a closed connection is discarded by the pool and replaced

    def _lock_and_read(
        self, conn: Connection, key: int, run_id: str
    ) -> tuple[bool, tuple[int, list[tuple[Any, ...]]] | None]:
        """Take the advisory lock, learn whether the run exists and, if this instance knows where the log
        ended, read the events after that: one call of `loopengt_lock_tail`, one round trip. Its read runs
        on a snapshot taken after the lock was granted (see the function in MIGRATIONS)."""
        known = self.tails.get(run_id)
        rows = conn.execute(LOCK_TAIL, (key, run_id, known)).fetchall()
        if not rows:
            return False, None
        if known is None:
            return True, None
        return True, (known, [] if rows[0][0] is None else rows)

    @staticmethod
    def _unlock(conn: Connection, key: int) -> None:
        """Release the advisory lock; if that cannot be confirmed, close the session, which releases it."""
        try:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.rollback()
            row = conn.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()
            released = row is not None and row[0] is True
        except psycopg.Error:
            released = False
        if not released:
            conn.close()
