"""Values going into PostgreSQL: text it can hold, JSON written exactly as the file store writes it, and a
batch of events as one array per column.

JSON (event data, states) is stored as text written by Python's `json`, exactly like the file store's log:
it round-trips byte for byte, where jsonb would reorder keys and refuse `\\u0000`, and the server never has
to parse it. `at` and `created_at` stay the engine's strings for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from loopengt_core.model.errors import InvalidArgument, StoreConflict
from loopengt_core.model.events import Event, event_data


def pg_text(value: str, what: str) -> str:
    """`value` if PostgreSQL text can hold it: valid UTF-8 (no lone surrogates) and no NUL character."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} is not valid Unicode: {exc}") from None
    if "\x00" in value:
        raise InvalidArgument(f"{what} contains a NUL character, which PostgreSQL text cannot hold")
    return value


def dump(value: Any) -> str:
    """Compact JSON text, refusing what the file store refuses (NaN, non-JSON objects, lone surrogates)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"cannot store a value that is not plain JSON: {exc}") from None
    return pg_text(text, "a JSON value")


def load_object(raw: str) -> dict[str, Any] | None:
    """The JSON object in `raw`, or None if it is not one."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_seq(value: object) -> bool:
    """Whether `value` is a seq: an integer >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def batch_params(run_id: str, events: Sequence[Event]) -> dict[str, Any]:
    """The parameters of `statements.APPEND_NOTIFY`: one array per column, so a batch is one statement and one round trip."""
    return {
        "run_id": run_id,
        "first": events[0].seq if events else 1,
        "seqs": [e.seq for e in events],
        "types": [e.type for e in events],
        "ats": [pg_text(e.at, "event time") for e in events],
        "datas": [dump(event_data(e)) for e in events],
        "tasks": [task_of(e) for e in events],
    }


def task_of(event: Event) -> str | None:
    """The task id the event names, as indexed (None: none, or one PostgreSQL cannot hold)."""
    return task_key(getattr(event, "task_id", None))


def task_key(task: object) -> str | None:
    """The task id as indexed: text that PostgreSQL can hold, else None (not indexed)."""
    if not isinstance(task, str):
        return None
    try:
        return pg_text(task, "task id")
    except InvalidArgument:
        return None


def lost_race(run_id: str, start: int, last: int) -> StoreConflict:
    """The StoreConflict of an append that another writer beat to its seq."""
    where = f"the log ends at seq {last}" if last >= 0 else "the log has moved on"
    return StoreConflict(
        f"run {run_id!r}: append starts at seq {start} but {where}; "
        "another writer got there first: reload the run and decide again",
        run_id=run_id,
    )
