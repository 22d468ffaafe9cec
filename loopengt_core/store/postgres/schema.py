"""The PostgreSQL store's schema: its tables as an append-only list of migrations, and applying them.

Tables (prefixed `loopengt_` so that a database can be shared with other applications):

    loopengt_runs         (run_id PK, spec_text, created_at, created_seq identity)   newest first = created_seq desc
    loopengt_events       (run_id, seq, type, at, data, PK (run_id, seq))            the append-only log
    loopengt_snapshots    (run_id PK, seq, state)                                    upserted
    loopengt_checkpoints  (run_id, checkpoint_id, seq, label, created_at, state, PK (run_id, checkpoint_id))
    loopengt_schema_version (version PK, applied_at)                                 one row per migration applied

`MIGRATIONS` is append-only and a migration's position in it is its version (as in LangGraph's
checkpoint-postgres). Every start applies the missing ones in one transaction under a transaction-level
advisory lock, so concurrent starts neither race nor half-migrate. `migrate` reads `MIGRATIONS` and
`SCHEMA_VERSION` from this module when it runs (a test stands in an older schema by replacing them).
"""

from __future__ import annotations

import hashlib
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from loopengt_core.store.errors import StoreIOError

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
    # A transition in one round trip when the caller knows where the log ends: the run's advisory lock for
    # this transaction only (so it queues behind a session's `loopengt_lock_tail` and holders of it queue
    # behind it), then, on a snapshot taken once the lock is granted, the log's end; the batch goes in with
    # its NOTIFY only if that end is still `last_seq`. Returns whether it went in (false: the log moved on,
    # or there is no run). Commit releases the lock.
    """
    CREATE FUNCTION loopengt_append_at(
        lock_key bigint, target text, last_seq bigint,
        seqs bigint[], types text[], ats text[], datas text[], tasks text[]
    ) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE ends bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT (SELECT coalesce(max(x.seq), 0) FROM loopengt_events x WHERE x.run_id = r.run_id) INTO ends
            FROM loopengt_runs r WHERE r.run_id = target;
        IF ends IS NULL OR ends <> last_seq THEN
            RETURN false;
        END IF;
        INSERT INTO loopengt_events (run_id, seq, type, at, data, task_id)
            SELECT target, b.seq, b.type, b.at, b.data, b.task_id
            FROM unnest(seqs, types, ats, datas, tasks) AS b(seq, type, at, data, task_id);
        PERFORM pg_notify('loopengt_changes', target);
        RETURN true;
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


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key: hashtext() is only 32 bits, too collision-prone for run ids."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"loopengt").digest()
    return int.from_bytes(digest, "big", signed=True)


_SCHEMA_LOCK: Final = lock_key("schema")


def migrate(conn: Connection, where: str) -> int:
    """Bring the schema to SCHEMA_VERSION; concurrent starts wait on the advisory lock, then find it done.

    `conn` is a connection of its own (outside any pool); `where` names the server in errors.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(_VERSION_TABLE)
        row = conn.execute("SELECT max(version) FROM loopengt_schema_version").fetchone()
        current = -1 if row is None or row[0] is None else int(row[0])
        if current > SCHEMA_VERSION:
            raise StoreIOError(
                f"PostgreSQL store at {where}: the schema is at version {current}, newer than "
                f"this loopengt knows ({SCHEMA_VERSION}); upgrade loopengt"
            )
        for version in range(current + 1, len(MIGRATIONS)):
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO loopengt_schema_version (version) VALUES (%s)", (version,))
    return SCHEMA_VERSION
