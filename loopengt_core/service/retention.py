"""`loopengt prune`: remove runs that ended long ago, so a store does not grow forever.

Only ended runs (completed, failed, cancelled) are ever removed: a run that is running, paused or
waiting for approval can still change, and its age says nothing about whether someone will come back
to it. A run's age is the time since it ended. Runs that cannot be read are left alone and reported.

What a run frees is reported as its events and its size as run data (the length of its export: spec,
events and checkpoints as JSON), a measure both stores share; the file store's snapshot comes on top.
A `Sweepable` store (the file store) also loses the temp files that writers killed mid-write left behind
(over an hour old).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound
from loopengt_core.model.events import parse_iso
from loopengt_core.model.state import RunState, project_run
from loopengt_core.service.portability import write_export
from loopengt_core.store import Store, Sweepable

PRUNABLE: tuple[str, ...] = ("completed", "failed", "cancelled")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w`, or a sum such as `1d12h`.

    Raises:
        InvalidArgument: anything else.
    """
    cleaned = text.strip().lower().replace(" ", "")
    parts = _AGE.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise InvalidArgument(
            f"--older-than takes an age such as 30d, 12h, 90m, 2w or 1d12h (got {text!r}); "
            "units: s, m, h, d, w"
        )
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def check_statuses(statuses: Iterable[str]) -> tuple[str, ...]:
    """The statuses to prune; refuses any a run can still leave."""
    chosen = tuple(dict.fromkeys(statuses)) or PRUNABLE
    bad = [s for s in chosen if s not in PRUNABLE]
    if bad:
        raise InvalidArgument(
            f"cannot prune runs with status {', '.join(bad)}: only ended runs are pruned "
            f"(--status {' | '.join(PRUNABLE)})"
        )
    return chosen


@dataclass(frozen=True)
class PrunedRun:
    run_id: str
    status: str
    ended_at: str
    events: int
    bytes: int


@dataclass
class PruneReport:
    dry_run: bool
    runs: list[PrunedRun] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    leftovers: int = 0  # temp files crashed writers left (file store)
    leftover_bytes: int = 0

    @property
    def events(self) -> int:
        """Events in the runs pruned (or, in a dry run, that would be)."""
        return sum(r.events for r in self.runs)

    @property
    def bytes(self) -> int:
        """Bytes the pruned runs took in the store."""
        return sum(r.bytes for r in self.runs)


def _state(store: Store, run_id: str) -> RunState:
    """The run's state, read without taking its lock or writing anything (no deadline ticks)."""
    loaded = store.load(run_id)
    base = RunState.model_validate(loaded.snapshot) if loaded.snapshot is not None else None
    return project_run(loaded.events, base)


def prune(
    store: Store,
    *,
    older_than: timedelta,
    now: datetime,
    statuses: Iterable[str] = PRUNABLE,
    dry_run: bool = False,
) -> PruneReport:
    """Remove (or with `dry_run` only list) the ended runs with a chosen status that ended before now - older_than.

    Each removal happens under the run's lock, so no transition of it is under way; a run already gone
    (another prune) is reported as skipped.
    """
    chosen = check_statuses(statuses)
    if older_than < timedelta(0):
        raise InvalidArgument("--older-than must not be negative")
    cutoff = now - older_than
    report = PruneReport(dry_run=dry_run)
    for run_id in store.list_runs():
        try:
            state = _state(store, run_id)
            if state.status not in chosen or state.ended_at is None or parse_iso(state.ended_at) > cutoff:
                continue
            size = write_export(store, run_id, lambda _: None, now=now)  # counted, never held whole
            found = PrunedRun(run_id, state.status, state.ended_at, state.seq, size)
            if not dry_run:
                with store.lock(run_id):
                    store.delete_run(run_id)
        except NotFound:
            report.skipped.append((run_id, "already gone"))
            continue
        except LoopengtError as exc:
            report.skipped.append((run_id, exc.message))
            continue
        report.runs.append(found)
    if isinstance(store, Sweepable):
        report.leftovers, report.leftover_bytes = store.sweep_leftovers(dry_run=dry_run)
    return report
