"""The fold: `apply(state, event)` is the only code that changes a run's state; `project_run` folds a log.

`apply` mutates the state it is given (a run's state is rebuilt for every transition otherwise, and
step outputs can be megabytes); callers that need the state before an event keep their own copy.
It checks `seq` like an aggregate checks its version: an out-of-order event is a bug, never skipped."""

from __future__ import annotations

from collections.abc import Iterable

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import (
    Event,
    RunForked,
    RunStarted,
)
from loopengt_core.model.state import run_appliers, task_appliers  # noqa: F401  (importing them registers the appliers)
from loopengt_core.model.state.records import workspace_record
from loopengt_core.model.state.registry import APPLIERS
from loopengt_core.model.state.run import RunState
from loopengt_core.model.state.tasks import StepState


def apply(state: RunState | None, event: Event) -> RunState:
    """Fold one event into the state. Returns the state (a new one for run_started / run_forked)."""
    applier = APPLIERS.get(type(event))
    if applier is not None and state is not None:
        if event.seq != state.seq + 1:
            raise StoreCorrupt(
                f"run {state.run_id!r}: event seq {event.seq} after {state.seq}", run_id=state.run_id
            )
        applier(state, event)
    elif isinstance(event, RunStarted):
        state = RunState(
            run_id=event.run_id,
            loop=event.loop,
            goal=event.goal,
            seed=event.seed,
            spec_hash=event.spec_hash,
            started_at=event.at,
            updated_at=event.at,
            parent_run_id=event.parent_run_id,
            context=dict(event.context),
            steps={name: StepState(name=name) for name in event.steps},
            memory=list(event.context_from),
        )
        if event.workspace is not None:
            state.workspace = workspace_record(event.workspace, event.seq)
    elif isinstance(event, RunForked):
        state = RunState.model_validate(event.state)
        state.run_id, state.parent_run_id = event.run_id, event.parent_run_id
        state.seq, state.started_at, state.checkpoints, state.answers = 0, event.at, 0, {}
        for step in state.steps.values():  # their seqs are the parent's log's
            step.output_seq = None
        # the parent's worktrees stay the parent's: the fork's isolated steps get their own
        state.worktrees, state.line = {}, None
        for task in state.tasks.values():
            task.workdir = None
        if event.workspace is not None:  # forked into a worktree: the fork works there
            state.workspace = workspace_record(event.workspace, event.seq)
    else:
        raise StoreCorrupt(f"the first event is {event.type!r}, not run_started or run_forked")
    state.seq = event.seq
    state.updated_at = event.at
    return state


def project_run(events: Iterable[Event], state: RunState | None = None) -> RunState:
    """The fold of `events`, starting from `state` (a snapshot) or from nothing."""
    for event in events:
        state = apply(state, event)
    if state is None:
        raise StoreCorrupt("a run without events")
    return state
