"""Metrics of a run, computed from its trace alone: a fold over the events, no store, no clock.

The first seven fields are loopengt 0.1.0's built-in metrics under their 0.1.0 names (`total_turns`,
`total_steps`, `completed_steps`, `failed_steps`, `success_rate`, `total_duration_seconds`,
`run_status`), so scripts that read `loopengt eval` keep working. One meaning changed: 0.1.0 summed
step durations it recorded itself; here `total_duration_seconds` is the run's wall time, from its first
event to its end (or to `now` / its last event while it is still going), which is what the log knows.

The rest answer "how did the loop go": attempts per step, how often each gate passed, how long the run
stood waiting for a person, and how long until an agent's first output passed all its gates.

`MetricsFold` takes events one at a time (the live view of `show --follow` feeds it as they arrive);
`run_metrics(events)` is the same fold over a whole trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from loopengt_core.model.budget import Spend, SpendView
from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import (
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    CommandRequested,
    Event,
    GateFailed,
    GatePassed,
    RunForked,
    StepCompleted,
    parse_iso,
)
from loopengt_core.model.state import RunState, RunStatus, apply

_GATE_PASSED = GatePassed | ApprovalGiven
_GATE_FAILED = GateFailed | ApprovalRejected


class GateStats(BaseModel):
    """How one gate fared over the run; an approval gate counts a person's answers."""

    gate: str = Field(description="The gate's name.")
    passed: int = Field(0, description="Checks it passed.")
    failed: int = Field(0, description="Checks it failed.")
    pass_rate: float | None = Field(None, description="passed / (passed + failed); None before any result.")
    scores: list[float] = Field(default_factory=list, description="A judge gate's scores, in order.")


class StepAttempts(BaseModel):
    """One step's attempts and spend in a run's metrics."""

    step: str = Field(description="The step's name.")
    status: str = Field(description="The step's status when the metrics were taken.")
    attempts: int = Field(description="Tasks and command runs issued for the step over the whole run.")
    spend: Spend = Field(default_factory=Spend, description="Usage its submissions reported.")


class RunMetrics(BaseModel):
    """A run's metrics (`loopengt eval`): 0.1.0's fields, plus attempts, gate pass rates, waiting times and
    spend."""

    run_id: str = Field(description="The run's id.")
    loop: str = Field(description="The name of the loop spec the run follows.")
    run_status: RunStatus = Field(description="The run's status when the metrics were taken.")
    total_turns: int = Field(description="Accepted submissions.")
    total_steps: int = Field(description="Steps in the spec.")
    completed_steps: int = Field(description="Steps that completed.")
    failed_steps: int = Field(description="Steps that failed.")
    success_rate: float = Field(description="completed_steps / total_steps (0.0 without steps), 4 decimals.")
    total_duration_seconds: float = Field(description="From the run's first event to its end (or now).")
    started_at: str = Field(description="When the run started, ISO 8601 UTC.")
    ended_at: str | None = Field(None, description="When it ended, ISO 8601 UTC; None while it goes on.")
    events: int = Field(description="Events folded (a forked run's count starts at its fork).")
    attempts: list[StepAttempts] = Field(description="Per step, in spec order.")
    gates: list[GateStats] = Field(description="Per gate, in the order they first reported.")
    approvals_requested: int = Field(0, description="Approvals a person was asked for.")
    approval_wait_seconds: float = Field(0.0, description="Time spent in waiting_approval, summed.")
    first_accepted_output_seconds: float | None = Field(
        None, description="From the start to the first agent output that passed all its gates; None if none."
    )
    spend: SpendView = Field(
        default_factory=SpendView,
        description="Tokens and cost reported over the run (unknown counted apart).",
    )


def _seconds(start: str, end: str | datetime) -> float:
    stop = parse_iso(end) if isinstance(end, str) else end
    return max(0.0, (stop - parse_iso(start)).total_seconds())


class MetricsFold:
    """The metrics so far of the events added; `result()` can be read after any of them."""

    def __init__(self) -> None:
        self.state: RunState | None = None
        self.gates: dict[str, GateStats] = {}
        self.events = 0
        self.approvals = 0
        self.waited = 0.0
        self.waiting_since: str | None = None
        self.first_accepted: str | None = None
        self.command_tasks: set[str] = set()
        self.last_at: str | None = None

    def add(self, event: Event) -> None:
        """Fold one more event into the metrics (events in seq order)."""
        self.state = apply(self.state, event)
        self.events += 1
        self.last_at = event.at
        if isinstance(event, _GATE_PASSED | _GATE_FAILED):
            stats = self.gates.setdefault(event.gate, GateStats(gate=event.gate))
            if isinstance(event, _GATE_PASSED):
                stats.passed += 1
            else:
                stats.failed += 1
            if isinstance(event, GatePassed | GateFailed) and event.score is not None:
                stats.scores.append(event.score)
            stats.pass_rate = round(stats.passed / (stats.passed + stats.failed), 4)
        if isinstance(event, ApprovalRequested):
            self.approvals += 1
            self.waiting_since = event.at
        elif isinstance(event, RunForked) and self.state.status == "waiting_approval":
            self.waiting_since = event.at  # forked from a checkpoint taken while waiting
        elif self.waiting_since is not None and self.state.status != "waiting_approval":
            self.waited += _seconds(self.waiting_since, event.at)
            self.waiting_since = None
        if isinstance(event, CommandRequested) and event.kind == "step":
            self.command_tasks.add(event.task_id)
        elif (
            isinstance(event, StepCompleted)
            and self.first_accepted is None
            and event.task_id not in self.command_tasks
        ):
            self.first_accepted = event.at

    def result(self, now: datetime | None = None) -> RunMetrics:
        """The metrics; a run still going is measured up to `now` if given, else up to its last event."""
        state = self.state
        if state is None or self.last_at is None:
            raise StoreCorrupt("a run without events has no metrics")
        until: str | datetime = state.ended_at or now or self.last_at
        steps = list(state.steps.values())
        completed = sum(s.status == "completed" for s in steps)
        waited = self.waited
        if self.waiting_since is not None:
            waited += _seconds(self.waiting_since, until)
        return RunMetrics(
            run_id=state.run_id,
            loop=state.loop,
            run_status=state.status,
            total_turns=state.turn,
            total_steps=len(steps),
            completed_steps=completed,
            failed_steps=sum(s.status == "failed" for s in steps),
            success_rate=round(completed / len(steps), 4) if steps else 0.0,
            total_duration_seconds=round(_seconds(state.started_at, until), 3),
            started_at=state.started_at,
            ended_at=state.ended_at,
            events=self.events,
            attempts=[
                StepAttempts(step=s.name, status=s.status, attempts=s.attempts, spend=s.spend.model_copy())
                for s in steps
            ],
            gates=[g.model_copy() for g in self.gates.values()],
            approvals_requested=self.approvals,
            approval_wait_seconds=round(waited, 3),
            first_accepted_output_seconds=(
                None
                if self.first_accepted is None
                else round(_seconds(state.started_at, self.first_accepted), 3)
            ),
            spend=SpendView.of(state.spend, state.turn),
        )


def run_metrics(events: Iterable[Event], *, now: datetime | None = None) -> RunMetrics:
    """The metrics of a whole trace (from its run_started or run_forked event).

    Raises:
        StoreCorrupt: the events are empty or do not fold (out of order, no start).
    """
    fold = MetricsFold()
    for event in events:
        fold.add(event)
    return fold.result(now)
