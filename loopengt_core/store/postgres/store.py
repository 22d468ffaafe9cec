"""`PostgresStore`: the `Store` protocol over PostgreSQL tables, so server processes on any number of
machines share runs safely. `open_store("postgresql://...")` returns one; psycopg is imported only in
this package.

This class is the protocol's face over its collaborators: `schema.py` (the tables and their migrations),
`statements.py` (the tuned hot statements), `values.py` and `rows.py` (what goes in and comes out: JSON as
text, byte for byte like the file store's log), `connection.py` (session options: durable commits) and
`pool.py` (connections and errors), `locking.py` (the advisory lock and its tail read: a transition under
it is three round trips; `append_at` makes one on a state at the log's end one), `checkpoints.py` and
`changes.py` (LISTEN/NOTIFY).

Writes: `append` is one statement (so one transaction and one round trip) whose INSERT adds the whole batch
only if it continues the log (the first seq is the stored last + 1); a writer that lost a race meets the
`(run_id, seq)` key, and both become StoreConflict. The same statement sends `pg_notify('loopengt_changes',
'<run_id>')` when it added rows, which PostgreSQL delivers only on commit; `changes()` listens for it.

Only the errors of `loopengt_core.store.errors` leave this package (a driver error becomes StoreIOError);
messages name the server as `postgresql://user@host:port/dbname`, never the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from loopengt_core.model.errors import InvalidArgument, StoreConflict, StoreCorrupt
from loopengt_core.model.events import AnyEvent, Event
from loopengt_core.store import Checkpoint, LoadedRun, check_batch, check_id
from loopengt_core.store.postgres import schema
from loopengt_core.store.postgres.changes import Listener
from loopengt_core.store.postgres.checkpoints import PgCheckpoints
from loopengt_core.store.postgres.locking import RunLocks
from loopengt_core.store.postgres.pool import Connections
from loopengt_core.store.postgres.rows import event_of, events_of, exists
from loopengt_core.store.postgres.schema import CHANNEL, Connection, lock_key
from loopengt_core.store.postgres.statements import (
    APPEND_AT,
    APPEND_NOTIFY,
    INSERT,
    LAST_SEQ,
    NOTIFY,
    SNAPSHOT,
    TAIL,
)
from loopengt_core.store.postgres.values import (
    batch_params,
    dump,
    is_seq,
    load_object,
    lost_race,
    pg_text,
    task_key,
)


class PostgresStore:
    """`Store` over PostgreSQL tables; see the module docstring for the schema and the guarantees.

    `pool_size` bounds the connections one instance opens for store calls; `lock()` borrows one of them for
    its block and `changes()` keeps one more of its own.
    """

    def __init__(self, dsn: str, *, snapshot_every: int = 100, pool_size: int = 4) -> None:
        if not isinstance(snapshot_every, int) or isinstance(snapshot_every, bool) or snapshot_every < 1:
            raise InvalidArgument(f"snapshot_every must be a positive integer, not {snapshot_every!r}")
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            raise InvalidArgument(f"pool_size must be a positive integer, not {pool_size!r}")
        if not isinstance(dsn, str):
            raise InvalidArgument("the PostgreSQL DSN must be a string")
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            # The parser's message may quote the password, so it is not shown.
            raise InvalidArgument(
                "invalid PostgreSQL DSN (not shown, as it may hold a password): "
                "use postgresql://user[:password]@host[:port]/dbname or libpq key=value pairs"
            ) from None
        self.snapshot_every = snapshot_every
        self.pool_size = pool_size
        self._conns = Connections(dsn, params, pool_size)
        self.where = self._conns.where
        self._locks = RunLocks(self._conns)
        self._listener = Listener(self._conns)
        self._checkpoints = PgCheckpoints(self._conns)
        with self._conns.translate("preparing the schema"), self._conns.connect() as conn:
            self.schema_version = schema.migrate(conn, self.where)

    def _last_seq(self, conn: Connection, run_id: str) -> int | None:
        """The run's last seq, or None if there is no such run."""
        row = conn.execute(LAST_SEQ, (run_id,)).fetchone()
        return None if row is None else int(row[0])

    # ----------------------------------------------------------------------------------- runs

    def create_run(self, run_id: str, spec_text: str, events: Sequence[Event]) -> None:
        """Insert the run and its first events in one transaction: it appears whole or not at all."""
        check_id(run_id)
        if not isinstance(spec_text, str):
            raise InvalidArgument("spec_text must be a string")
        for index, event in enumerate(events, start=1):
            if not isinstance(event, Event) or event.seq != index:
                raise InvalidArgument(f"run {run_id!r}: a new run's events must have seqs 1, 2, 3, ...")
        spec = pg_text(spec_text, "spec text")
        batch = batch_params(run_id, events)
        with (
            self._conns.translate(f"creating run {run_id!r}", run_id),
            self._conns.conn() as conn,
            conn.transaction(),
        ):
            created = conn.execute(
                "INSERT INTO loopengt_runs (run_id, spec_text) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
                (run_id, spec),
            ).fetchone()
            if created is None:  # a concurrent creator's insert committed first (we waited for it)
                raise StoreConflict(f"run {run_id!r} already exists", run_id=run_id)
            if events:
                conn.execute(INSERT, batch)
            conn.execute(NOTIFY, (CHANNEL, run_id))
        self._locks.tails[run_id] = len(events)

    def append(self, run_id: str, events: Sequence[Event]) -> None:
        """One transaction: the batch goes in whole if it continues the log, with a NOTIFY sent on commit."""
        check_id(run_id)
        if not events:
            return
        check_batch(run_id, events)
        batch = batch_params(run_id, events)
        start = events[0].seq
        self._locks.prefetched().pop(run_id, None)  # the tail read at lock() ends before this batch
        with self._conns.translate(f"appending to run {run_id!r}", run_id), self._conns.conn() as conn:
            try:
                row = conn.execute(APPEND_NOTIFY, batch).fetchone()
            except pg_errors.UniqueViolation:
                # A concurrent writer committed the same seq while we waited on its row of the key.
                last = self._last_seq(conn, run_id)
                raise lost_race(run_id, start, -1 if last is None else last) from None
            if row is None or row[0] != len(events):
                last = self._last_seq(conn, run_id)
                if last is None:
                    raise self._conns.not_found(run_id)
                raise lost_race(run_id, start, last)
        self._locks.tails[run_id] = events[-1].seq

    def append_at(self, run_id: str, last: int, events: Sequence[Event]) -> bool:
        """One round trip: the batch goes in (with its NOTIFY) only if the log still ends at `last`, checked
        under the run's advisory lock for this transaction (`loopengt_append_at`); False if it moved on."""
        check_id(run_id)
        if not is_seq(last):
            raise InvalidArgument(f"last must be an integer >= 0, not {last!r}")
        if not events:
            raise InvalidArgument(f"run {run_id!r}: append_at needs at least one event")
        check_batch(run_id, events)
        if events[0].seq != last + 1:
            raise InvalidArgument(
                f"run {run_id!r}: a batch after seq {last} starts at seq {last + 1}, not {events[0].seq}",
                run_id=run_id,
            )
        batch = batch_params(run_id, events)
        batch["key"], batch["last"] = lock_key(f"run:{run_id}"), last
        self._locks.prefetched().pop(run_id, None)
        with self._conns.translate(f"appending to run {run_id!r}", run_id), self._conns.conn() as conn:
            try:
                row = conn.execute(APPEND_AT, batch).fetchone()
            except pg_errors.UniqueViolation:
                return False  # a writer that took no lock committed the same seq while we inserted
        if row is None or row[0] is not True:
            return False
        self._locks.tails[run_id] = events[-1].seq
        return True

    def ends_at(self, run_id: str, last: int) -> bool:
        """One read of the log's end (the end of the primary-key index)."""
        check_id(run_id)
        with (
            self._conns.translate(f"reading the last seq of run {run_id!r}", run_id),
            self._conns.conn() as conn,
        ):
            found = self._last_seq(conn, run_id)
        if found is not None:
            self._locks.tails[run_id] = found
        return found == last

    def holding(self, run_id: str) -> AbstractContextManager[None]:
        """The run held against this process's other threads only (see `AppendAt`)."""
        return self._locks.holding(run_id)

    def load(self, run_id: str) -> LoadedRun:
        """Spec + snapshot + the events after it: an index range scan, so the cost follows the tail only."""
        check_id(run_id)
        with self._conns.translate(f"loading run {run_id!r}", run_id), self._conns.conn() as conn:
            row = conn.execute(
                "SELECT r.spec_text, s.seq, s.state, "
                "(SELECT coalesce(max(seq), 0) FROM loopengt_events e WHERE e.run_id = r.run_id) "
                "FROM loopengt_runs r LEFT JOIN loopengt_snapshots s ON s.run_id = r.run_id "
                "WHERE r.run_id = %s",
                (run_id,),
            ).fetchone()
            if row is None:
                raise self._conns.not_found(run_id)
            spec_text, snap_seq, raw_state, last = row
            state = None if raw_state is None else load_object(raw_state)
            if state is None or snap_seq > last:  # a damaged or impossible snapshot: the log alone rebuilds
                state, snap_seq = None, 0
            rows = conn.execute(
                "SELECT seq, type, at, data FROM loopengt_events WHERE run_id = %s AND seq > %s ORDER BY seq",
                (run_id, snap_seq),
            ).fetchall()
        events = events_of(run_id, rows, snap_seq, self.where)
        if len(events) < last - snap_seq:
            raise StoreCorrupt(f"run {run_id!r}: the log in {self.where} misses events", run_id=run_id)
        self._locks.tails[run_id] = snap_seq + len(events)
        return LoadedRun(run_id, spec_text, state, snap_seq, events)

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """Events with seq > after, in order, at most `limit`: one query on the (run_id, seq) key."""
        check_id(run_id)
        if not is_seq(after):
            raise InvalidArgument(f"after must be an integer >= 0, not {after!r}")
        if limit is not None and not is_seq(limit):
            raise InvalidArgument(f"limit must be an integer >= 0 or None, not {limit!r}")
        rows = self._locks.from_prefetch(run_id, after, limit)
        if rows is None:
            with (
                self._conns.translate(f"reading events of run {run_id!r}", run_id),
                self._conns.conn() as conn,
            ):
                rows = self._tail(conn, run_id, after, limit)
        if limit is None:
            self._locks.tails[run_id] = rows[-1][0] if rows else after
        return events_of(run_id, rows, after, self.where)

    def _tail(self, conn: Connection, run_id: str, after: int, limit: int | None) -> list[tuple[Any, ...]]:
        """The rows of events after `after` (at most `limit`) in one round trip; NotFound if no run."""
        rows = conn.execute(TAIL, {"run_id": run_id, "after": after, "limit": limit}).fetchall()
        return self._tail_rows(run_id, rows)

    def _tail_rows(self, run_id: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`TAIL`'s rows as event rows: none means no run, one row of NULLs a run without such events."""
        if not rows:
            raise self._conns.not_found(run_id)
        return [] if rows[0][0] is None else rows

    def task_events(self, run_id: str, task_id: str) -> list[AnyEvent]:
        """The events naming `task_id`: one query on the (run_id, task_id) index."""
        check_id(run_id)
        if not isinstance(task_id, str):
            raise InvalidArgument("task_id must be text")
        key = task_key(task_id)
        with self._conns.translate(f"reading events of run {run_id!r}", run_id), self._conns.conn() as conn:
            rows = []
            if key is not None:  # a task id PostgreSQL cannot hold was never indexed: no events name it
                rows = conn.execute(
                    "SELECT seq, type, at, data FROM loopengt_events WHERE run_id = %s AND task_id = %s "
                    "ORDER BY seq",
                    (run_id, key),
                ).fetchall()
            if not rows and not exists(conn, run_id):
                raise self._conns.not_found(run_id)
        return [event_of(run_id, row, self.where) for row in rows]

    def last_seq(self, run_id: str) -> int:
        """The newest seq, read from the end of the primary-key index."""
        check_id(run_id)
        with (
            self._conns.translate(f"reading the last seq of run {run_id!r}", run_id),
            self._conns.conn() as conn,
        ):
            last = self._last_seq(conn, run_id)
        if last is None:
            raise self._conns.not_found(run_id)
        return last

    def version(self, run_id: str) -> str:
        """The last seq as text: the log only grows, so it changes exactly when the log does."""
        return str(self.last_seq(run_id))

    def exists(self, run_id: str) -> bool:
        """Whether the store holds a run with this id."""
        check_id(run_id)
        with self._conns.translate(f"checking run {run_id!r}", run_id), self._conns.conn() as conn:
            return exists(conn, run_id)

    def delete_run(self, run_id: str) -> None:
        """One transaction; the run's row is locked first, so no append can slip in between the deletes."""
        check_id(run_id)
        with (
            self._conns.translate(f"deleting run {run_id!r}", run_id),
            self._conns.conn() as conn,
            conn.transaction(),
        ):
            row = conn.execute(
                "SELECT 1 FROM loopengt_runs WHERE run_id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                raise self._conns.not_found(run_id)
            for table in ("loopengt_checkpoints", "loopengt_snapshots", "loopengt_events", "loopengt_runs"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))
            conn.execute(NOTIFY, (CHANNEL, run_id))
        self._locks.tails.pop(run_id, None)
        self._locks.prefetched().pop(run_id, None)

    def list_runs(self) -> list[str]:
        """Newest first by creation order (an identity column: one order for every server, no clock skew)."""
        with self._conns.translate("listing runs"), self._conns.conn() as conn:
            rows = conn.execute("SELECT run_id FROM loopengt_runs ORDER BY created_seq DESC").fetchall()
        return [row[0] for row in rows]

    def save_snapshot(self, run_id: str, seq: int, state: dict[str, Any]) -> None:
        """Upsert the run's one snapshot (replacing the previous one) after checking `seq` is in the log."""
        check_id(run_id)
        if not is_seq(seq):
            raise InvalidArgument(f"snapshot seq must be an integer >= 0, not {seq!r}")
        if not isinstance(state, dict):
            raise InvalidArgument("snapshot state must be a JSON object")
        raw = dump(state)
        what = f"saving the snapshot of run {run_id!r}"
        with self._conns.translate(what, run_id), self._conns.conn() as conn:
            saved = conn.execute(SNAPSHOT, {"run_id": run_id, "seq": seq, "state": raw}).fetchone()
            if saved is None:  # no run, or the seq is past the end of its log: say which
                last = self._last_seq(conn, run_id)
                if last is None:
                    raise self._conns.not_found(run_id)
                raise InvalidArgument(
                    f"run {run_id!r}: cannot snapshot at seq {seq}, the log ends at seq {last}", run_id=run_id
                )

    # ----------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert; the (run_id, checkpoint_id) key makes a second saver of the same id lose cleanly."""
        self._checkpoints.save(checkpoint)

    def discard_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Delete the checkpoint's row; nothing if there is none, NotFound if the run is unknown."""
        self._checkpoints.discard(run_id, checkpoint_id)

    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """Raises NotFound naming the run's checkpoints, so the caller can pick an existing one."""
        return self._checkpoints.get(run_id, checkpoint_id)

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Oldest first: by seq, then creation time, then id (the file store's order)."""
        return self._checkpoints.list(run_id)

    # ----------------------------------------------------------------------------------- locking

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the run exclusively across threads, processes and machines for one transition.

        A per-run thread lock first (so threads of this process queue without taking connections), then
        `pg_advisory_lock` on a pooled connection that the block's own store calls reuse. Not re-entrant.
        """
        return self._locks.lock(run_id)

    def changes(self, timeout_seconds: float) -> list[str]:
        """Run ids whose log changed (a run created or appended to by any instance on this database).

        Waits up to `timeout_seconds` for the first notification; [] on timeout. See `Listener.changes`.
        """
        return self._listener.changes(timeout_seconds, self.list_runs)

    def close(self) -> None:
        """Close the pool and the listening connection; the store reopens them on the next call."""
        self._conns.close()
        self._listener.close()
