"""The PostgreSQL store: the `Store` protocol over tables, so server processes on any number of machines share
runs safely. `open_store("postgresql://...")` returns one; psycopg is imported only here.

Tables (prefixed `loopengt_` so that a database can be shared with other applications):

    loopengt_runs         (run_id PK, spec_text, created_at, created_seq identity)   newest first = created_seq desc
    loopengt_events       (run_id, seq, type, at, data, PK (run_id, seq))            the append-only log
    loopengt_snapshots    (run_id PK, seq, state)                                    upserted
    loopengt_checkpoints  (run_id, checkpoint_id, seq, label, created_at, state, PK (run_id, checkpoint_id))
    loopengt_schema_version (version PK, applied_at)                                 one row per migration applied

JSON (event data, states) is stored as text written by Python's `json`, exactly like the file store's log:
it round-trips byte for byte, where jsonb would reorder keys and refuse `\\u0000`, and the server never has
to parse it. `at` and `created_at` stay the engine's strings for the same reason.

Schema: `MIGRATIONS` is append-only and a migration's position in it is its version (as in LangGraph's
checkpoint-postgres). Every start applies the missing ones in one transaction under a transaction-level
advisory lock, so concurrent starts neither race nor half-migrate.

Writes: `append` is one statement (so one transaction and one round trip) whose INSERT adds the whole batch
only if it continues the log (the first seq is the stored last + 1); a writer that lost a race meets the
`(run_id, seq)` key, and both become StoreConflict. The same statement sends `pg_notify('loopengt_changes',
'<run_id>')` when it added rows, which PostgreSQL delivers only on commit; `changes()` listens for it.

Durability: every session of the store runs with `synchronous_commit = on` (set when it connects), so a
commit is acknowledged only once its WAL is written, even on a server whose default is off; a killed
PostgreSQL loses no acknowledged step (tests/durability/pgkill_suite.py).

Locking: `lock(run_id)` takes a per-run thread lock, then a session-level `pg_advisory_lock` on a 64-bit
hash of the run id, held on one pooled connection for the whole block. Every store call the same thread
makes inside the block runs on that connection, so a transition needs one connection, not two, and a
small pool cannot deadlock with itself (a held lock never waits for a second connection from the pool).

Round trips: a transition is three. lock() calls `loopengt_lock_tail`, which takes the lock, says whether
the run exists and reads the events after the seq this instance last saw of the run; the block's first
`events()` call is answered from that read. The function's read takes its snapshot once the lock is granted
(every session runs read committed, whatever the role's default), so it sees every append made under the
lock before. Then the append, then the unlock. The pool lends a connection without a round trip
unless its socket shows the session was lost (`_check_connection`); psycopg prepares each statement on its
fifth use on a connection, so steady-state steps send no query text.

Only the errors of `loopengt_core.store.errors` leave this module (a driver error becomes StoreIOError);
messages name the server as `postgresql://user@host:port/dbname`, never the password.
"""

from __future__ import annotations

import hashlib
import json
import select
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import ValidationError

from loopengt_core.errors import InvalidArgument, LoopengtError, NotFound, StoreConflict, StoreCorrupt
from loopengt_core.events import AnyEvent, Event, event_data, event_from_record
from loopengt_core.store import (
    ID_PATTERN,
    Checkpoint,
    DatabaseProbe,
    LoadedRun,
    check_batch,
    check_checkpoint,
    check_id,
)
from loopengt_core.store.errors import StoreIOError

__all__ = [
    "CHANNEL",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresStore",
    "StoreIOError",
    "describe_dsn",
    "probe",
]

Connection = psycopg.Connection[TupleRow]

CHANNEL: Final = "loopengt_changes"

# Append-only: never edit or reorder an entry, add a new one. Position = version.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE loopengt_runs (
        run_id text PRIMARY KEY,
        spec_text text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        created_seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE
    )
    """,
    """
    CREATE TABLE loopengt_events (
        run_id text NOT NULL REFERENCES loopengt_runs (run_id),
        seq bigint NOT NULL CHECK (seq >= 1),
        type text NOT NULL,
        at text NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (run_id, seq)
    )
    """,
    """
    CREATE TABLE loopengt_snapshots (
        run_id text PRIMARY KEY REFERENCES loopengt_runs (run_id),
        seq bigint NOT NULL CHECK (seq >= 0),
        state text NOT NULL
    )
    """,
    """
    CREATE TABLE loopengt_checkpoints (
        run_id text NOT NULL REFERENCES loopengt_runs (run_id),
        checkpoint_id text NOT NULL,
        seq bigint NOT NULL CHECK (seq >= 0),
        label text,
        created_at text NOT NULL,
        state text NOT NULL,
        PRIMARY KEY (run_id, checkpoint_id)
    )
    """,
    # The task an event names (data.task_id), so a late or repeated submission reads only its own events.
    "ALTER TABLE loopengt_events ADD COLUMN task_id text",
    "CREATE INDEX loopengt_events_task ON loopengt_events (run_id, task_id) WHERE task_id IS NOT NULL",
    # Fill it for events written before, row by row: PostgreSQL's json cannot turn a \u0000 anywhere in a
    # row into text, so such a row is read without its \u0000 escapes; a row that still fails stays NULL
    # rather than stopping the migration. Written with $$ quoting and no percent sign (psycopg).
    r"""
    DO $$
    DECLARE r record;
    BEGIN
        FOR r IN SELECT run_id, seq, data FROM loopengt_events WHERE strpos(data, '"task_id"') > 0 LOOP
            BEGIN
                UPDATE loopengt_events SET task_id = r.data::json ->> 'task_id'
                WHERE run_id = r.run_id AND seq = r.seq;
            EXCEPTION WHEN others THEN
                BEGIN
                    UPDATE loopengt_events SET task_id = replace(r.data, '\u0000', '')::json ->> 'task_id'
                    WHERE run_id = r.run_id AND seq = r.seq;
                EXCEPTION WHEN others THEN NULL;
                END;
            END;
        END LOOP;
    END $$
    """,
    # lock(): the advisory lock, the run's existence and the events after a seq in one call. PL/pgSQL runs
    # each statement of a volatile function on a snapshot of its own, so the read sees every commit made
    # before the lock was granted (read committed, which the store sets for its sessions). No row: no run;
    # one row of NULLs: no events after `after_seq` (or it is NULL: the lock and the existence only).
    """
    CREATE FUNCTION loopengt_lock_tail(lock_key bigint, target text, after_seq bigint)
    RETURNS TABLE (seq bigint, type text, at text, data text)
    LANGUAGE plpgsql VOLATILE AS $$
    #variable_conflict use_column
    BEGIN
        PERFORM pg_advisory_lock(lock_key);
        RETURN QUERY
            SELECT e.seq, e.type, e.at, e.data FROM loopengt_runs r
            LEFT JOIN LATERAL (
                SELECT x.seq, x.type, x.at, x.data FROM loopengt_events x
                WHERE x.run_id = r.run_id AND x.seq > after_seq ORDER BY x.seq
            ) e ON true
            WHERE r.run_id = target ORDER BY e.seq;
    END $$
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS) - 1

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS loopengt_schema_version (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""

# Inserts the batch only if its first seq continues the log; 0 rows means a gap, a repeat or no run. The
# arrays go in binary format: in text format psycopg escapes every quote of the JSON with a regex.
_INSERT = """
    INSERT INTO loopengt_events (run_id, seq, type, at, data, task_id)
    SELECT %(run_id)s, b.seq, b.type, b.at, b.data, b.task_id
    FROM unnest(%(seqs)b::bigint[], %(types)b::text[], %(ats)b::text[], %(datas)b::text[], %(tasks)b::text[])
        AS b(seq, type, at, data, task_id)
    WHERE (SELECT coalesce(max(seq), 0) FROM loopengt_events WHERE run_id = %(run_id)s) = %(first)s - 1
"""
# The whole append as one statement (one implicit transaction, one round trip): the conditional insert,
# then the NOTIFY only if it added rows (delivered on commit, like the NOTIFY statement it replaces).
_APPEND_NOTIFY = f"""
    WITH added AS ({_INSERT} RETURNING 1), counted AS (SELECT count(*) AS n FROM added)
    SELECT n, CASE WHEN n > 0 THEN pg_notify('{CHANNEL}', %(run_id)s)::text END FROM counted
"""
# The events after a seq, with the run's existence in the same round trip: no row means no run, one row of
# NULLs a run with no such events.
_TAIL = """
    SELECT e.seq, e.type, e.at, e.data FROM loopengt_runs r
    LEFT JOIN LATERAL (
        SELECT seq, type, at, data FROM loopengt_events
        WHERE run_id = r.run_id AND seq > %(after)s ORDER BY seq LIMIT %(limit)s
    ) e ON true
    WHERE r.run_id = %(run_id)s ORDER BY e.seq
"""
_LOCK_TAIL = "SELECT seq, type, at, data FROM loopengt_lock_tail(%s, %s, %s)"
_LAST_SEQ = """
    SELECT (SELECT coalesce(max(seq), 0) FROM loopengt_events e WHERE e.run_id = r.run_id)
    FROM loopengt_runs r WHERE r.run_id = %s
"""
_NOTIFY = "SELECT pg_notify(%s, %s)"
# Upserts the run's one snapshot if the run has `seq` in its log (the log only grows, so checking in the same
# statement is as good as in a transaction around it); no row back means no run or a seq past the end.
_SNAPSHOT = """
    INSERT INTO loopengt_snapshots (run_id, seq, state)
    SELECT r.run_id, %(seq)s, %(state)s FROM loopengt_runs r
    WHERE r.run_id = %(run_id)s
        AND %(seq)s <= (SELECT coalesce(max(seq), 0) FROM loopengt_events e WHERE e.run_id = r.run_id)
    ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, state = excluded.state
    RETURNING 1
"""

_CONNECT_TIMEOUT = 10  # seconds, unless the DSN says otherwise
_POOL_TIMEOUT = 30.0  # seconds a call waits for a free pooled connection


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key: hashtext() is only 32 bits, too collision-prone for run ids."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"loopengt").digest()
    return int.from_bytes(digest, "big", signed=True)


_SCHEMA_LOCK: Final = _lock_key("schema")


def _text(value: str, what: str) -> str:
    """`value` if PostgreSQL text can hold it: valid UTF-8 (no lone surrogates) and no NUL character."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} is not valid Unicode: {exc}") from None
    if "\x00" in value:
        raise InvalidArgument(f"{what} contains a NUL character, which PostgreSQL text cannot hold")
    return value


def _dump(value: Any) -> str:
    """Compact JSON text, refusing what the file store refuses (NaN, non-JSON objects, lone surrogates)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"cannot store a value that is not plain JSON: {exc}") from None
    return _text(text, "a JSON value")


def _load_object(raw: str) -> dict[str, Any] | None:
    """The JSON object in `raw`, or None if it is not one."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
        self.where = _describe(params)
        self._dsn = dsn
        self._password = str(params.get("password") or "")
        self._connect_kwargs: dict[str, Any] = {"autocommit": True, "options": _durable_options(params)}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = _CONNECT_TIMEOUT
        self._mutex = threading.Lock()
        self._pool: ConnectionPool[Connection] | None = None
        self._run_locks: dict[str, threading.Lock] = {}
        self._holders: dict[str, int] = {}
        self._local = threading.local()
        self._listen_mutex = threading.Lock()
        self._listener: Connection | None = None
        self._listened = False
        # The last seq this instance saw of each run (its own appends, loads and tail reads): lock() reads
        # the events after it in the lock's own round trip, which the block's first events() call returns.
        self._tails: dict[str, int] = {}
        self.schema_version = self._migrate()

    # ----------------------------------------------------------------------------------- plumbing

    def _error(self, exc: psycopg.Error, what: str, run_id: str | None) -> LoopengtError:
        """The `loopengt_core.errors` form of a driver error; the message never includes the password."""
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
                f"no connection within {_POOL_TIMEOUT:g}s (is the server up? are all {self.pool_size} "
                "pooled connections busy?)"
            )
        return StoreIOError(f"PostgreSQL store at {self.where}: {what} failed: {detail}", run_id=run_id)

    @contextmanager
    def _translate(self, what: str, run_id: str | None = None) -> Iterator[None]:
        """Turn any psycopg error raised in the block into a LoopengtError."""
        try:
            yield
        except psycopg.Error as exc:
            raise self._error(exc, what, run_id) from exc

    def _connect(self) -> Connection:
        """A new connection outside the pool (schema migration, LISTEN)."""
        return psycopg.connect(self._dsn, **self._connect_kwargs)

    def _get_pool(self) -> ConnectionPool[Connection]:
        """The pool, opened on first use and again after `close()`."""
        with self._mutex:
            if self._pool is None:
                pool: ConnectionPool[Connection] = ConnectionPool(
                    self._dsn,
                    kwargs=self._connect_kwargs,
                    min_size=1,
                    max_size=self.pool_size,
                    open=False,
                    check=_check_connection,  # a server restart costs a reconnect, not an error
                    timeout=_POOL_TIMEOUT,
                    name=f"loopengt {self.where}",
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _held(self) -> list[Connection]:
        """This thread's connections held by `lock()`, innermost last."""
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return cast("list[Connection]", held)

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """The connection a call runs on: the one this thread's `lock()` holds, else a pooled one."""
        held = self._held()
        if held:
            yield held[-1]
            return
        with self._get_pool().connection() as conn:
            yield conn

    def _not_found(self, run_id: str) -> NotFound:
        return NotFound(f"no run {run_id!r} in the store at {self.where}", run_id=run_id)

    def _last_seq(self, conn: Connection, run_id: str) -> int | None:
        """The run's last seq, or None if there is no such run."""
        row = conn.execute(_LAST_SEQ, (run_id,)).fetchone()
        return None if row is None else int(row[0])

    def _exists(self, conn: Connection, run_id: str) -> bool:
        row = conn.execute("SELECT 1 FROM loopengt_runs WHERE run_id = %s", (run_id,)).fetchone()
        return row is not None

    def _event(self, run_id: str, row: tuple[Any, ...]) -> AnyEvent:
        seq, type_, at, raw = row
        data = _load_object(raw)
        try:
            if data is None:
                raise ValueError("data is not a JSON object")
            return event_from_record({"seq": seq, "type": type_, "at": at, "data": data})
        except (ValueError, ValidationError) as exc:
            reason = str(exc).splitlines()[0]
            raise StoreCorrupt(
                f"run {run_id!r}: event {seq} in {self.where} is corrupt ({reason})", run_id=run_id
            ) from None

    def _events(self, run_id: str, rows: list[tuple[Any, ...]], after: int) -> list[AnyEvent]:
        """Decode rows, checking that they continue from `after` without gaps."""
        events = []
        for expected, row in enumerate(rows, start=after + 1):
            if row[0] != expected:
                raise StoreCorrupt(
                    f"run {run_id!r}: the log in {self.where} has seq {row[0]} where {expected} belongs "
                    "(a gap in the log)",
                    run_id=run_id,
                )
            events.append(self._event(run_id, row))
        return events

    def _migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; concurrent starts wait on the advisory lock, then find it done."""
        with self._translate("preparing the schema"), self._connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_VERSION_TABLE)
            row = conn.execute("SELECT max(version) FROM loopengt_schema_version").fetchone()
            current = -1 if row is None or row[0] is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise StoreIOError(
                    f"PostgreSQL store at {self.where}: the schema is at version {current}, newer than "
                    f"this loopengt knows ({SCHEMA_VERSION}); upgrade loopengt"
                )
            for version in range(current + 1, len(MIGRATIONS)):
                conn.execute(MIGRATIONS[version])
                conn.execute("INSERT INTO loopengt_schema_version (version) VALUES (%s)", (version,))
        return SCHEMA_VERSION

    # ----------------------------------------------------------------------------------- runs

    def create_run(self, run_id: str, spec_text: str, events: Sequence[Event]) -> None:
        """Insert the run and its first events in one transaction: it appears whole or not at all."""
        check_id(run_id)
        if not isinstance(spec_text, str):
            raise InvalidArgument("spec_text must be a string")
        for index, event in enumerate(events, start=1):
            if not isinstance(event, Event) or event.seq != index:
                raise InvalidArgument(f"run {run_id!r}: a new run's events must have seqs 1, 2, 3, ...")
        spec = _text(spec_text, "spec text")
        batch = _batch(run_id, events)
        with self._translate(f"creating run {run_id!r}", run_id), self._conn() as conn, conn.transaction():
            created = conn.execute(
                "INSERT INTO loopengt_runs (run_id, spec_text) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
                (run_id, spec),
            ).fetchone()
            if created is None:  # a concurrent creator's insert committed first (we waited for it)
                raise StoreConflict(f"run {run_id!r} already exists", run_id=run_id)
            if events:
                conn.execute(_INSERT, batch)
            conn.execute(_NOTIFY, (CHANNEL, run_id))
        self._tails[run_id] = len(events)

    def append(self, run_id: str, events: Sequence[Event]) -> None:
        """One transaction: the batch goes in whole if it continues the log, with a NOTIFY sent on commit."""
        check_id(run_id)
        if not events:
            return
        check_batch(run_id, events)
        batch = _batch(run_id, events)
        start = events[0].seq
        self._prefetched().pop(run_id, None)  # the tail read at lock() ends before this batch
        with self._translate(f"appending to run {run_id!r}", run_id), self._conn() as conn:
            try:
                row = conn.execute(_APPEND_NOTIFY, batch).fetchone()
            except pg_errors.UniqueViolation:
                # A concurrent writer committed the same seq while we waited on its row of the key.
                last = self._last_seq(conn, run_id)
                raise _lost_race(run_id, start, -1 if last is None else last) from None
            if row is None or row[0] != len(events):
                last = self._last_seq(conn, run_id)
                if last is None:
                    raise self._not_found(run_id)
                raise _lost_race(run_id, start, last)
        self._tails[run_id] = events[-1].seq

    def load(self, run_id: str) -> LoadedRun:
        """Spec + snapshot + the events after it: an index range scan, so the cost follows the tail only."""
        check_id(run_id)
        with self._translate(f"loading run {run_id!r}", run_id), self._conn() as conn:
            row = conn.execute(
                "SELECT r.spec_text, s.seq, s.state, "
                "(SELECT coalesce(max(seq), 0) FROM loopengt_events e WHERE e.run_id = r.run_id) "
                "FROM loopengt_runs r LEFT JOIN loopengt_snapshots s ON s.run_id = r.run_id "
                "WHERE r.run_id = %s",
                (run_id,),
            ).fetchone()
            if row is None:
                raise self._not_found(run_id)
            spec_text, snap_seq, raw_state, last = row
            state = None if raw_state is None else _load_object(raw_state)
            if state is None or snap_seq > last:  # a damaged or impossible snapshot: the log alone rebuilds
                state, snap_seq = None, 0
            rows = conn.execute(
                "SELECT seq, type, at, data FROM loopengt_events WHERE run_id = %s AND seq > %s ORDER BY seq",
                (run_id, snap_seq),
            ).fetchall()
        events = self._events(run_id, rows, snap_seq)
        if len(events) < last - snap_seq:
            raise StoreCorrupt(f"run {run_id!r}: the log in {self.where} misses events", run_id=run_id)
        self._tails[run_id] = snap_seq + len(events)
        return LoadedRun(run_id, spec_text, state, snap_seq, events)

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """Events with seq > after, in order, at most `limit`: one query on the (run_id, seq) key."""
        check_id(run_id)
        if not _is_seq(after):
            raise InvalidArgument(f"after must be an integer >= 0, not {after!r}")
        if limit is not None and not _is_seq(limit):
            raise InvalidArgument(f"limit must be an integer >= 0 or None, not {limit!r}")
        rows = self._from_prefetch(run_id, after, limit)
        if rows is None:
            with self._translate(f"reading events of run {run_id!r}", run_id), self._conn() as conn:
                rows = self._tail(conn, run_id, after, limit)
        if limit is None:
            self._tails[run_id] = rows[-1][0] if rows else after
        return self._events(run_id, rows, after)

    def _tail(self, conn: Connection, run_id: str, after: int, limit: int | None) -> list[tuple[Any, ...]]:
        """The rows of events after `after` (at most `limit`) in one round trip; NotFound if no run."""
        rows = conn.execute(_TAIL, {"run_id": run_id, "after": after, "limit": limit}).fetchall()
        return self._tail_rows(run_id, rows)

    def _tail_rows(self, run_id: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`_TAIL`'s rows as event rows: none means no run, one row of NULLs a run without such events."""
        if not rows:
            raise self._not_found(run_id)
        return [] if rows[0][0] is None else rows

    def _prefetched(self) -> dict[str, tuple[int, list[tuple[Any, ...]]]]:
        """This thread's tails read by `lock()`: run id -> (after, the rows of the events after it)."""
        found = getattr(self._local, "prefetched", None)
        if found is None:
            found = self._local.prefetched = {}
        return cast("dict[str, tuple[int, list[tuple[Any, ...]]]]", found)

    def _from_prefetch(self, run_id: str, after: int, limit: int | None) -> list[tuple[Any, ...]] | None:
        """The events after `after` from the tail this thread's lock() read, if it covers them.

        That tail was read once the lock was granted and nothing was appended since (append drops it),
        so it is the log as a query now would find it, for any writer that takes the lock."""
        if limit == 0:
            return []
        got = self._prefetched().get(run_id)
        if got is None or after < got[0]:
            return None
        rows = [row for row in got[1] if row[0] > after]
        return rows if limit is None else rows[:limit]

    def task_events(self, run_id: str, task_id: str) -> list[AnyEvent]:
        """The events naming `task_id`: one query on the (run_id, task_id) index."""
        check_id(run_id)
        if not isinstance(task_id, str):
            raise InvalidArgument("task_id must be text")
        key = _task_key(task_id)
        with self._translate(f"reading events of run {run_id!r}", run_id), self._conn() as conn:
            rows = []
            if key is not None:  # a task id PostgreSQL cannot hold was never indexed: no events name it
                rows = conn.execute(
                    "SELECT seq, type, at, data FROM loopengt_events WHERE run_id = %s AND task_id = %s "
                    "ORDER BY seq",
                    (run_id, key),
                ).fetchall()
            if not rows and not self._exists(conn, run_id):
                raise self._not_found(run_id)
        return [self._event(run_id, row) for row in rows]

    def last_seq(self, run_id: str) -> int:
        """The newest seq, read from the end of the primary-key index."""
        check_id(run_id)
        with self._translate(f"reading the last seq of run {run_id!r}", run_id), self._conn() as conn:
            last = self._last_seq(conn, run_id)
        if last is None:
            raise self._not_found(run_id)
        return last

    def version(self, run_id: str) -> str:
        """The last seq as text: the log only grows, so it changes exactly when the log does."""
        return str(self.last_seq(run_id))

    def exists(self, run_id: str) -> bool:
        """Whether the store holds a run with this id."""
        check_id(run_id)
        with self._translate(f"checking run {run_id!r}", run_id), self._conn() as conn:
            return self._exists(conn, run_id)

    def delete_run(self, run_id: str) -> None:
        """One transaction; the run's row is locked first, so no append can slip in between the deletes."""
        check_id(run_id)
        with self._translate(f"deleting run {run_id!r}", run_id), self._conn() as conn, conn.transaction():
            row = conn.execute(
                "SELECT 1 FROM loopengt_runs WHERE run_id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                raise self._not_found(run_id)
            for table in ("loopengt_checkpoints", "loopengt_snapshots", "loopengt_events", "loopengt_runs"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))
            conn.execute(_NOTIFY, (CHANNEL, run_id))
        self._tails.pop(run_id, None)
        self._prefetched().pop(run_id, None)

    def list_runs(self) -> list[str]:
        """Newest first by creation order (an identity column: one order for every server, no clock skew)."""
        with self._translate("listing runs"), self._conn() as conn:
            rows = conn.execute("SELECT run_id FROM loopengt_runs ORDER BY created_seq DESC").fetchall()
        return [row[0] for row in rows]

    def save_snapshot(self, run_id: str, seq: int, state: dict[str, Any]) -> None:
        """Upsert the run's one snapshot (replacing the previous one) after checking `seq` is in the log."""
        check_id(run_id)
        if not _is_seq(seq):
            raise InvalidArgument(f"snapshot seq must be an integer >= 0, not {seq!r}")
        if not isinstance(state, dict):
            raise InvalidArgument("snapshot state must be a JSON object")
        raw = _dump(state)
        what = f"saving the snapshot of run {run_id!r}"
        with self._translate(what, run_id), self._conn() as conn:
            saved = conn.execute(_SNAPSHOT, {"run_id": run_id, "seq": seq, "state": raw}).fetchone()
            if saved is None:  # no run, or the seq is past the end of its log: say which
                last = self._last_seq(conn, run_id)
                if last is None:
                    raise self._not_found(run_id)
                raise InvalidArgument(
                    f"run {run_id!r}: cannot snapshot at seq {seq}, the log ends at seq {last}", run_id=run_id
                )

    # ----------------------------------------------------------------------------------- checkpoints

    def _checkpoint(self, run_id: str, row: tuple[Any, ...]) -> Checkpoint:
        checkpoint_id, seq, label, created_at, raw = row
        state = _load_object(raw)
        if state is None:
            raise StoreCorrupt(
                f"run {run_id!r}: checkpoint {checkpoint_id!r} in {self.where} is corrupt (state is not a "
                "JSON object)",
                run_id=run_id,
            )
        return Checkpoint(run_id, checkpoint_id, seq, label, created_at, state)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert; the (run_id, checkpoint_id) key makes a second saver of the same id lose cleanly."""
        check_checkpoint(checkpoint)
        run_id, cid = checkpoint.run_id, checkpoint.checkpoint_id
        label = None if checkpoint.label is None else _text(checkpoint.label, "checkpoint label")
        created_at = _text(checkpoint.created_at, "checkpoint created_at")
        raw = _dump(checkpoint.state)
        with self._translate(f"saving checkpoint {cid!r} of run {run_id!r}", run_id), self._conn() as conn:
            if not self._exists(conn, run_id):
                raise self._not_found(run_id)
            saved = conn.execute(
                "INSERT INTO loopengt_checkpoints (run_id, checkpoint_id, seq, label, created_at, state) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, checkpoint_id) DO NOTHING RETURNING 1",
                (run_id, cid, checkpoint.seq, label, created_at, raw),
            ).fetchone()
        if saved is None:
            raise StoreConflict(f"run {run_id!r} already has a checkpoint {cid!r}", run_id=run_id)

    def discard_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Delete the checkpoint's row; nothing if there is none, NotFound if the run is unknown."""
        check_id(run_id)
        cid = check_id(checkpoint_id, "checkpoint_id")
        with (
            self._translate(f"discarding checkpoint {cid!r} of run {run_id!r}", run_id),
            self._conn() as conn,
        ):
            gone = conn.execute(
                "DELETE FROM loopengt_checkpoints WHERE run_id = %s AND checkpoint_id = %s", (run_id, cid)
            ).rowcount
            if not gone and not self._exists(conn, run_id):
                raise self._not_found(run_id)

    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """Raises NotFound naming the run's checkpoints, so the caller can pick an existing one."""
        check_id(run_id)
        cid = check_id(checkpoint_id, "checkpoint_id")
        with self._translate(f"reading checkpoint {cid!r} of run {run_id!r}", run_id), self._conn() as conn:
            row = conn.execute(
                "SELECT checkpoint_id, seq, label, created_at, state FROM loopengt_checkpoints "
                "WHERE run_id = %s AND checkpoint_id = %s",
                (run_id, cid),
            ).fetchone()
            if row is None:
                if not self._exists(conn, run_id):
                    raise self._not_found(run_id)
                known = conn.execute(
                    "SELECT checkpoint_id FROM loopengt_checkpoints WHERE run_id = %s ORDER BY checkpoint_id",
                    (run_id,),
                ).fetchall()
                listing = ", ".join(k[0] for k in known) if known else "none"
                raise NotFound(
                    f"run {run_id!r} has no checkpoint {cid!r}; its checkpoints: {listing}", run_id=run_id
                )
        return self._checkpoint(run_id, row)

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Oldest first: by seq, then creation time, then id (the file store's order)."""
        check_id(run_id)
        with self._translate(f"listing checkpoints of run {run_id!r}", run_id), self._conn() as conn:
            rows = conn.execute(
                "SELECT checkpoint_id, seq, label, created_at, state FROM loopengt_checkpoints "
                "WHERE run_id = %s ORDER BY seq, created_at, checkpoint_id",
                (run_id,),
            ).fetchall()
            if not rows and not self._exists(conn, run_id):
                raise self._not_found(run_id)
        return [self._checkpoint(run_id, row) for row in rows]

    # ----------------------------------------------------------------------------------- locking

    def _thread_lock(self, run_id: str) -> threading.Lock:
        with self._mutex:
            return self._run_locks.setdefault(run_id, threading.Lock())

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run exclusively across threads, processes and machines for one transition.

        A per-run thread lock first (so threads of this process queue without taking connections), then
        `pg_advisory_lock` on a pooled connection that the block's own store calls reuse. Not re-entrant.
        """
        check_id(run_id)
        me = threading.get_ident()
        if self._holders.get(run_id) == me:
            raise InvalidArgument(
                f"run {run_id!r} is already locked by this thread (lock() is not re-entrant)"
            )
        key = _lock_key(f"run:{run_id}")
        held = self._held()
        with self._thread_lock(run_id):
            pool = None if held else self._get_pool()  # an outer lock's connection serves a nested one
            with self._translate(f"locking run {run_id!r}", run_id):
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
                raise self._not_found(run_id)
            self._holders[run_id] = me
            held.append(conn)
            prefetched = self._prefetched()
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
        known = self._tails.get(run_id)
        rows = conn.execute(_LOCK_TAIL, (key, run_id, known)).fetchall()
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

    # ----------------------------------------------------------------------------------- notifications

    def changes(self, timeout_seconds: float) -> list[str]:
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
        with self._listen_mutex, self._translate("listening for changes"):
            conn = self._listener
            if conn is None or conn.closed:
                conn = self._connect()
                try:
                    conn.execute(f"LISTEN {CHANNEL}")
                except BaseException:
                    conn.close()
                    raise
                self._listener = conn
                if self._listened:
                    found.update(dict.fromkeys(self.list_runs()))
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
        """Close the pool and the listening connection; the store reopens them on the next call."""
        with self._mutex:
            pool, self._pool = self._pool, None
        if pool is not None:
            with self._translate("closing the connection pool"):
                pool.close()
        with self._listen_mutex:
            listener, self._listener = self._listener, None
            self._listened = False
        if listener is not None:
            with self._translate("closing the listening connection"):
                listener.close()


def _durable_options(params: dict[str, Any]) -> str:
    """The DSN's `options` plus `-c synchronous_commit=on` and read committed, last so that they win.

    An acknowledged step must survive the database server's crash: a commit has to wait for its WAL
    whatever the server's (or the role's, or the DSN's) default says. Set in the startup packet, it costs
    no round trip and outranks `ALTER ROLE/DATABASE ... SET`. Read committed gives every statement its own
    snapshot, which the tail read after the lock needs (see `loopengt_lock_tail`).
    """
    given = str(params.get("options") or "").strip()
    return f"{given} -c synchronous_commit=on -c default_transaction_isolation=read\\ committed".strip()


def _check_connection(conn: Connection) -> None:
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


def _describe(params: dict[str, Any]) -> str:
    """`postgresql://user@host:port/dbname` for messages: where the store is, without the password."""
    user = params.get("user") or ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port")
    dbname = params.get("dbname") or user
    return f"postgresql://{user + '@' if user else ''}{host}{':' + str(port) if port else ''}/{dbname}"


def _batch(run_id: str, events: Sequence[Event]) -> dict[str, Any]:
    """The parameters of `_APPEND`: one array per column, so a batch is one statement and one round trip."""
    return {
        "run_id": run_id,
        "first": events[0].seq if events else 1,
        "seqs": [e.seq for e in events],
        "types": [e.type for e in events],
        "ats": [_text(e.at, "event time") for e in events],
        "datas": [_dump(event_data(e)) for e in events],
        "tasks": [_task_of(e) for e in events],
    }


def _task_of(event: Event) -> str | None:
    return _task_key(getattr(event, "task_id", None))


def _task_key(task: object) -> str | None:
    """The task id as indexed: text that PostgreSQL can hold, else None (not indexed)."""
    if not isinstance(task, str):
        return None
    try:
        return _text(task, "task id")
    except InvalidArgument:
        return None


def _lost_race(run_id: str, start: int, last: int) -> StoreConflict:
    where = f"the log ends at seq {last}" if last >= 0 else "the log has moved on"
    return StoreConflict(
        f"run {run_id!r}: append starts at seq {start} but {where}; "
        "another writer got there first: reload the run and decide again",
        run_id=run_id,
    )


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, as shown to a person (no password); a DSN that does not parse is not quoted."""
    try:
        return _describe(conninfo_to_dict(dsn))
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
