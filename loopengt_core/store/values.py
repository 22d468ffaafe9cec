"""The values a store takes and returns (runs, checkpoints, repairs, probes) and the checks of ids,
batches and checkpoints that every backend applies the same way."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loopengt_core.model.errors import InvalidArgument, StoreConflict
from loopengt_core.model.events import AnyEvent, Event

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_id(value: object, what: str = "run_id") -> str:
    """Validate a run or checkpoint id so that no argument can leave the store directory."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"invalid {what} {str(value)[:80]!r}: use 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def check_batch(run_id: str, events: Sequence[Event]) -> None:
    """Refuse an append that is not a run of consecutive Events (every backend checks the same way)."""
    first = events[0].seq if isinstance(events[0], Event) else None
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise InvalidArgument("append takes Event objects")
        if first is not None and event.seq != first + index:
            raise StoreConflict(
                f"run {run_id!r}: the appended seqs are not consecutive ({[e.seq for e in events][:10]})",
                run_id=run_id,
            )


@dataclass(frozen=True)
class LoadedRun:
    """What loading a run reads: the frozen spec, the newest snapshot, and only the events after it."""

    run_id: str
    spec_text: str
    snapshot: dict[str, Any] | None
    snapshot_seq: int
    events: list[AnyEvent]


@dataclass(frozen=True)
class Checkpoint:
    """A named pointer to a seq plus the engine state there; `resume` can fork a run from it."""

    run_id: str
    checkpoint_id: str
    seq: int
    label: str | None
    created_at: str
    state: dict[str, Any] = field(repr=False)


def check_checkpoint(checkpoint: object) -> Checkpoint:
    """Refuse a checkpoint that is not one a store can keep (every backend checks the same way)."""
    if not isinstance(checkpoint, Checkpoint):
        raise InvalidArgument("save_checkpoint takes a Checkpoint")
    check_id(checkpoint.run_id)
    cid = check_id(checkpoint.checkpoint_id, "checkpoint_id")
    seq = checkpoint.seq
    if not (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 0
        and (checkpoint.label is None or isinstance(checkpoint.label, str))
        and isinstance(checkpoint.created_at, str)
        and isinstance(checkpoint.state, dict)
    ):
        raise InvalidArgument(
            f"checkpoint {cid!r}: seq must be an integer >= 0, label a string or None, "
            "created_at a string and state a JSON object"
        )
    return checkpoint


@dataclass(frozen=True)
class Repair:
    """What `Repairable.repair` did: the log kept up to `kept_seq`, the rest in `backup`."""

    run_id: str
    line: int
    reason: str
    kept_seq: int
    removed_lines: int
    removed_bytes: int
    backup: str
    removed_checkpoints: list[str]


@dataclass(frozen=True)
class DatabaseProbe:
    """What `probe_database` read from a PostgreSQL server without changing anything (`loopengt doctor`)."""

    where: str  # postgresql://user@host:port/dbname, never the password
    server_version: str  # e.g. "PostgreSQL 16.4"
    schema_version: int | None  # None: no loopengt tables yet (the first server to start creates them)
    known_version: int  # the schema version this loopengt migrates to
