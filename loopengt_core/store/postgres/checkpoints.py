"""Checkpoints in PostgreSQL: one row each in `loopengt_checkpoints`, keyed (run_id, checkpoint_id), so a
second saver of the same id loses cleanly.
"""

from __future__ import annotations

import builtins

from loopengt_core.model.errors import NotFound, StoreConflict
from loopengt_core.store import Checkpoint, check_checkpoint, check_id
from loopengt_core.store.postgres.pool import Connections
from loopengt_core.store.postgres.rows import checkpoint_of, exists
from loopengt_core.store.postgres.values import dump, pg_text


class PgCheckpoints:
    """Saving, reading, listing and discarding one store's checkpoints."""

    def __init__(self, conns: Connections) -> None:
        """Run on `conns` (inside a lock, on the lock's connection)."""
        self._conns = conns

    def save(self, checkpoint: Checkpoint) -> None:
        """Insert; the (run_id, checkpoint_id) key makes a second saver of the same id lose cleanly."""
        check_checkpoint(checkpoint)
        run_id, cid = checkpoint.run_id, checkpoint.checkpoint_id
        label = None if checkpoint.label is None else pg_text(checkpoint.label, "checkpoint label")
        created_at = pg_text(checkpoint.created_at, "checkpoint created_at")
        raw = dump(checkpoint.state)
        with (
            self._conns.translate(f"saving checkpoint {cid!r} of run {run_id!r}", run_id),
            self._conns.conn() as conn,
        ):
            if not exists(conn, run_id):
                raise self._conns.not_found(run_id)
            saved = conn.execute(
                "INSERT INTO loopengt_checkpoints (run_id, checkpoint_id, seq, label, created_at, state) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, checkpoint_id) DO NOTHING RETURNING 1",
                (run_id, cid, checkpoint.seq, label, created_at, raw),
            ).fetchone()
        if saved is None:
            raise StoreConflict(f"run {run_id!r} already has a checkpoint {cid!r}", run_id=run_id)

    def discard(self, run_id: str, checkpoint_id: str) -> None:
        """Delete the checkpoint's row; nothing if there is none, NotFound if the run is unknown."""
        check_id(run_id)
        cid = check_id(checkpoint_id, "checkpoint_id")
        with (
            self._conns.translate(f"discarding checkpoint {cid!r} of run {run_id!r}", run_id),
            self._conns.conn() as conn,
        ):
            gone = conn.execute(
                "DELETE FROM loopengt_checkpoints WHERE run_id = %s AND checkpoint_id = %s", (run_id, cid)
            ).rowcount
            if not gone and not exists(conn, run_id):
                raise self._conns.not_found(run_id)

    def get(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """Raises NotFound naming the run's checkpoints, so the caller can pick an existing one."""
        check_id(run_id)
        cid = check_id(checkpoint_id, "checkpoint_id")
        with (
            self._conns.translate(f"reading checkpoint {cid!r} of run {run_id!r}", run_id),
            self._conns.conn() as conn,
        ):
            row = conn.execute(
                "SELECT checkpoint_id, seq, label, created_at, state FROM loopengt_checkpoints "
                "WHERE run_id = %s AND checkpoint_id = %s",
                (run_id, cid),
            ).fetchone()
            if row is None:
                if not exists(conn, run_id):
                    raise self._conns.not_found(run_id)
                known = conn.execute(
                    "SELECT checkpoint_id FROM loopengt_checkpoints WHERE run_id = %s ORDER BY checkpoint_id",
                    (run_id,),
                ).fetchall()
                listing = ", ".join(k[0] for k in known) if known else "none"
                raise NotFound(
                    f"run {run_id!r} has no checkpoint {cid!r}; its checkpoints: {listing}", run_id=run_id
                )
        return checkpoint_of(run_id, row, self._conns.where)

    def list(self, run_id: str) -> builtins.list[Checkpoint]:
        """Oldest first: by seq, then creation time, then id (the file store's order)."""
        check_id(run_id)
        with (
            self._conns.translate(f"listing checkpoints of run {run_id!r}", run_id),
            self._conns.conn() as conn,
        ):
            rows = conn.execute(
                "SELECT checkpoint_id, seq, label, created_at, state FROM loopengt_checkpoints "
                "WHERE run_id = %s ORDER BY seq, created_at, checkpoint_id",
                (run_id,),
            ).fetchall()
            if not rows and not exists(conn, run_id):
                raise self._conns.not_found(run_id)
        return [checkpoint_of(run_id, row, self._conns.where) for row in rows]
