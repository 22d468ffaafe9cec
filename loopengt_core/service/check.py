"""`loopengt check`: verify a store: every run's checksums, seq continuity, snapshot and checkpoints.

Reading the whole log verifies each line's checksum and that seqs run 1, 2, ... without gaps; the
snapshot and every checkpoint must equal the fold of the log up to their seq; and loading through the
snapshot must give the same state as folding the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopengt_core.engine.validation import load_spec
from loopengt_core.model.errors import InvalidArgument, LoopengtError, StoreCorrupt
from loopengt_core.model.state import RunState, project_run
from loopengt_core.store import Repairable, Store, check_id


@dataclass
class RunCheck:
    run_id: str
    events: int = 0
    problems: list[str] = field(default_factory=list)


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key
    return "(none)"


def check_run(store: Store, run_id: str) -> RunCheck:
    """Verify one run: its log reads back (checksums, seq continuity), its spec loads, its snapshot and
    checkpoints equal the fold of the log up to their seq, and loading through the snapshot gives the fold of
    the whole log. Problems are collected in the result, not raised.

    A server may append while this runs: the log is compared up to the last seq the load saw."""
    result = RunCheck(run_id)
    try:
        # load first, the whole log after: a server may append meanwhile (check runs beside live servers),
        # so the log read holds at least what the load saw, and both folds stop at the load's last seq
        loaded = store.load(run_id)
        events = store.events(run_id)
        result.events = len(events)
        load_spec(loaded.spec_text, source=f"run {run_id} spec.yaml")
        cold = project_run(
            loaded.events, RunState.model_validate(loaded.snapshot) if loaded.snapshot else None
        )
        states: dict[int, dict[str, Any]] = {}
        points = [c for c in store.list_checkpoints(run_id) if c.seq <= cold.seq]  # not ones taken since
        wanted = {loaded.snapshot_seq} | {c.seq for c in points}
        state: RunState | None = None
        for event in events:
            if event.seq > cold.seq:
                break
            state = project_run([event], state)
            if event.seq in wanted:
                states[event.seq] = state.model_dump(mode="json")
        if state is None:
            result.problems.append("the log holds no events")
            return result
        if loaded.snapshot is not None:
            snap = RunState.model_validate(loaded.snapshot).model_dump(mode="json")
            if states.get(loaded.snapshot_seq) != snap:
                key = _first_difference(states.get(loaded.snapshot_seq, {}), snap)
                result.problems.append(
                    f"snapshot at seq {loaded.snapshot_seq} differs from the log (field {key})"
                )
        if cold.model_dump(mode="json") != state.model_dump(mode="json"):
            key = _first_difference(cold.model_dump(mode="json"), state.model_dump(mode="json"))
            result.problems.append(f"loading through the snapshot differs from folding the log (field {key})")
        for point in points:
            if states.get(point.seq) != RunState.model_validate(point.state).model_dump(mode="json"):
                result.problems.append(
                    f"checkpoint {point.checkpoint_id} (seq {point.seq}) differs from the log"
                )
    except LoopengtError as exc:
        result.problems.append(exc.message)
    return result


def check_store(store: Store) -> list[RunCheck]:
    """`check_run` for every run in the store (`loopengt check`)."""
    return [check_run(store, run_id) for run_id in store.list_runs()]


def damaged_runs(store: Store) -> list[str]:
    """The runs whose log fails its checksums or seqs when loaded (`loopengt doctor`).

    Loading reads the snapshot, a prefix CRC and the tail, so this is cheap where `check_store` folds every
    log. A run that vanished meanwhile or is unreadable for another reason is left to `check_store`.
    """
    damaged: list[str] = []
    for run_id in store.list_runs():
        try:
            store.load(run_id)
        except StoreCorrupt:
            damaged.append(run_id)
        except LoopengtError:
            continue
    return damaged


def repair_run(store: Store, run_id: str) -> str:
    """Repair a damaged file-store log at a person's request; what was removed, in one paragraph.

    Raises:
        InvalidArgument: the store cannot repair (PostgreSQL keeps no torn or damaged lines to cut).
    """
    check_id(run_id)
    if not isinstance(store, Repairable):
        raise InvalidArgument(
            "--repair works on a file store; a PostgreSQL store has no damaged lines to cut (restore the "
            "database from a backup instead)"
        )
    done = store.repair(run_id)
    if done is None:
        return f"run {run_id}: its log has no damaged line; nothing to repair"
    kept = f"kept events 1-{done.kept_seq}" if done.kept_seq else "kept no events"
    aside = (
        f"; checkpoints past the cut set aside: {', '.join(done.removed_checkpoints)}"
        if done.removed_checkpoints
        else ""
    )
    return (
        f"run {run_id}: {kept}; removed {done.removed_lines} lines ({done.removed_bytes} bytes) from line "
        f"{done.line} on ({done.reason}); the snapshot was removed (the next load folds the log){aside}. "
        f"The original log is at {done.backup}"
    )
