"""The PostgreSQL store's hot statements, each one round trip; their text is kept exactly as tuned.

A transition whose caller knows where the log ends is one round trip, `APPEND_AT` (the lock for its own
transaction, the check that the log still ends there, the insert and its NOTIFY in one call); otherwise
three: `LOCK_TAIL` (the lock, the run's existence and the tail in one call), `APPEND_NOTIFY` (the
conditional insert and its NOTIFY in one statement), then the unlock. psycopg
prepares each statement on its fifth use on a connection, so steady-state steps send no query text.
"""

from __future__ import annotations

from loopengt_core.store.postgres.schema import CHANNEL

# Inserts the batch only if its first seq continues the log; 0 rows means a gap, a repeat or no run. The
# arrays go in binary format: in text format psycopg escapes every quote of the JSON with a regex.
INSERT = """
    INSERT INTO loopengt_events (run_id, seq, type, at, data, task_id)
    SELECT %(run_id)s, b.seq, b.type, b.at, b.data, b.task_id
    FROM unnest(%(seqs)b::bigint[], %(types)b::text[], %(ats)b::text[], %(datas)b::text[], %(tasks)b::text[])
        AS b(seq, type, at, data, task_id)
    WHERE (SELECT coalesce(max(seq), 0) FROM loopengt_events WHERE run_id = %(run_id)s) = %(first)s - 1
"""
# The whole append as one statement (one implicit transaction, one round trip): the conditional insert,
# then the NOTIFY only if it added rows (delivered on commit, like the NOTIFY statement it replaces).
APPEND_NOTIFY = f"""
    WITH added AS ({INSERT} RETURNING 1), counted AS (SELECT count(*) AS n FROM added)
    SELECT n, CASE WHEN n > 0 THEN pg_notify('{CHANNEL}', %(run_id)s)::text END FROM counted
"""
# The events after a seq, with the run's existence in the same round trip: no row means no run, one row of
# NULLs a run with no such events.
TAIL = """
    SELECT e.seq, e.type, e.at, e.data FROM loopengt_runs r
    LEFT JOIN LATERAL (
        SELECT seq, type, at, data FROM loopengt_events
        WHERE run_id = r.run_id AND seq > %(after)s ORDER BY seq LIMIT %(limit)s
    ) e ON true
    WHERE r.run_id = %(run_id)s ORDER BY e.seq
"""
LOCK_TAIL = "SELECT seq, type, at, data FROM loopengt_lock_tail(%s, %s, %s)"
# A whole transition's write when the caller's state is at the log's end `last`: see `loopengt_append_at`.
APPEND_AT = """
    SELECT loopengt_append_at(%(key)s, %(run_id)s, %(last)s, %(seqs)b::bigint[], %(types)b::text[],
        %(ats)b::text[], %(datas)b::text[], %(tasks)b::text[])
"""
LAST_SEQ = """
    SELECT (SELECT coalesce(max(seq), 0) FROM loopengt_events e WHERE e.run_id = r.run_id)
    FROM loopengt_runs r WHERE r.run_id = %s
"""
NOTIFY = "SELECT pg_notify(%s, %s)"
# Upserts the run's one snapshot if the run has `seq` in its log (the log only grows, so checking in the same
# statement is as good as in a transaction around it); no row back means no run or a seq past the end.
SNAPSHOT = """
    INSERT INTO loopengt_snapshots (run_id, seq, state)
    SELECT r.run_id, %(seq)s, %(state)s FROM loopengt_runs r
    WHERE r.run_id = %(run_id)s
        AND %(seq)s <= (SELECT coalesce(max(seq), 0) FROM loopengt_events e WHERE e.run_id = r.run_id)
    ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, state = excluded.state
    RETURNING 1
"""
