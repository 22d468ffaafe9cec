"""Memory across runs: `context_from: [RUN_ID, ...]` gives a new run's tasks what earlier runs produced.

What is read, once, when the run starts: for each named run, its final output (`final_output`, set when it
completed) and each step's last accepted output (`steps`: the output that passed the step's gates most
recently; steps with none are left out), with the run's `loop`, `status` and the `seq` it was read
through. The entries are ordered oldest first (by the time of each run's last event, then as named) and
go into the `run_started` event (`context_from`), so the run's log holds exactly what its tasks saw: a
replay never reads the source runs again, and a source run that changes or is deleted later changes
nothing. Every task's `input.memory` carries these entries.

The size bound, deterministic: the newest entries are kept whole while together they fit in
`BUDGET_BYTES` (16 000 bytes of compact JSON); every older entry is shortened: its final output and each
step output whose JSON is longer than `SHORT_CHARS` (300 characters) becomes that JSON's first 300
characters followed by `… (N chars)`, and the entry gets `"shortened": true`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from loopengt_core.model.errors import InvalidArgument, NotFound
from loopengt_core.model.spec import CONTEXT_FROM_MAX
from loopengt_core.model.state import RunState
from loopengt_core.store import check_id

BUDGET_BYTES = 16_000
SHORT_CHARS = 300
MAX_RUNS = CONTEXT_FROM_MAX


def check_context_from(value: object, where: str = "context_from") -> list[str]:
    """A list of distinct run ids, at most MAX_RUNS, or InvalidArgument naming `where`."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where} must be a list of run ids (got {type(value).__name__})")
    ids = list(dict.fromkeys(value))
    for run_id in ids:
        check_id(run_id, f"{where} run id")
    if len(ids) > MAX_RUNS:
        raise InvalidArgument(f"{where} names {len(ids)} runs; at most {MAX_RUNS}")
    return ids


def entry_of(state: RunState) -> dict[str, Any]:
    """What a run leaves for later runs: its final output and each step's last accepted output."""
    return {
        "run_id": state.run_id,
        "loop": state.loop,
        "status": state.status,
        "seq": state.seq,
        "final_output": state.final_output,
        "steps": {name: step.output for name, step in state.steps.items() if step.output is not None},
    }


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode())


def _short(value: Any) -> Any:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value if len(text) <= SHORT_CHARS else f"{text[:SHORT_CHARS]}… ({len(text)} chars)"


def shorten(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its final output and step outputs cut to SHORT_CHARS of JSON each."""
    return {
        **entry,
        "final_output": _short(entry["final_output"]),
        "steps": {name: _short(output) for name, output in entry["steps"].items()},
        "shortened": True,
    }


def bounded(entries: Sequence[dict[str, Any]], budget_bytes: int = BUDGET_BYTES) -> list[dict[str, Any]]:
    """Entries oldest first: the newest whole while they fit in `budget_bytes` together, the rest shortened."""
    kept: list[dict[str, Any]] = []
    used, whole = 0, True
    for entry in reversed(entries):
        size = _size(entry)
        whole = whole and used + size <= budget_bytes
        if whole:
            used += size
            kept.append(entry)
        else:
            kept.append(shorten(entry))
    return list(reversed(kept))


def read_memory(run_ids: Sequence[str], read: Callable[[str], RunState]) -> list[dict[str, Any]]:
    """The memory entries of `run_ids` (read through `read`, which gives a run's current state), bounded.

    Raises:
        InvalidArgument: a run id is malformed or names no run (the message says which).
    """
    states = []
    for run_id in run_ids:
        try:
            states.append(read(run_id))
        except NotFound:
            raise InvalidArgument(
                f"context_from: no run {run_id!r} in this store; list_runs shows the runs there are"
            ) from None
    ordered = sorted(enumerate(states), key=lambda pair: (pair[1].updated_at, pair[0]))
    return bounded([entry_of(state) for _, state in ordered])
