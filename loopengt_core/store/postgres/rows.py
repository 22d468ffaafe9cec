"""Rows coming out of PostgreSQL as events and checkpoints, checked: a row that does not decode, or a gap in
the seqs, is StoreCorrupt naming the run and the server.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import AnyEvent, event_from_record
from loopengt_core.store import Checkpoint
from loopengt_core.store.postgres.schema import Connection
from loopengt_core.store.postgres.values import load_object


def event_of(run_id: str, row: tuple[Any, ...], where: str) -> AnyEvent:
    """Decode one event row; StoreCorrupt naming the run and the server if it does not hold."""
    seq, type_, at, raw = row
    data = load_object(raw)
    try:
        if data is None:
            raise ValueError("data is not a JSON object")
        return event_from_record({"seq": seq, "type": type_, "at": at, "data": data})
    except (ValueError, ValidationError) as exc:
        reason = str(exc).splitlines()[0]
        raise StoreCorrupt(
            f"run {run_id!r}: event {seq} in {where} is corrupt ({reason})", run_id=run_id
        ) from None


def events_of(run_id: str, rows: list[tuple[Any, ...]], after: int, where: str) -> list[AnyEvent]:
    """Decode rows, checking that they continue from `after` without gaps."""
    events = []
    for expected, row in enumerate(rows, start=after + 1):
        if row[0] != expected:
            raise StoreCorrupt(
                f"run {run_id!r}: the log in {where} has seq {row[0]} where {expected} belongs "
                "(a gap in the log)",
                run_id=run_id,
            )
        events.append(event_of(run_id, row, where))
    return events


def checkpoint_of(run_id: str, row: tuple[Any, ...], where: str) -> Checkpoint:
    """Decode one checkpoint row; StoreCorrupt if its state is not a JSON object."""
    checkpoint_id, seq, label, created_at, raw = row
    state = load_object(raw)
    if state is None:
        raise StoreCorrupt(
            f"run {run_id!r}: checkpoint {checkpoint_id!r} in {where} is corrupt (state is not a "
            "JSON object)",
            run_id=run_id,
        )
    return Checkpoint(run_id, checkpoint_id, seq, label, created_at, state)


def exists(conn: Connection, run_id: str) -> bool:
    """Whether the store holds the run (one indexed lookup on `conn`)."""
    row = conn.execute("SELECT 1 FROM loopengt_runs WHERE run_id = %s", (run_id,)).fetchone()
    return row is not None
