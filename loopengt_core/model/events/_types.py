"""`AnyEvent`: the union of the event models, one per type. In each model, field order is the order of
the keys in a record's `data`.

A field with a default is one a record may lack (older logs, or a key writers leave out when it does not
apply); `to_record` writes back exactly the keys an event was built or read with.

The models live in one module per kind of fact (`_run_events.py`, `_task_events.py`,
`_command_events.py`, `_workspace_events.py`); a new event type goes in the module of its kind and in
`AnyEvent` here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from loopengt_core.model.events._command_events import (
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
)
from loopengt_core.model.events._run_events import (
    BudgetReached,
    CheckpointTaken,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunPaused,
    RunResumed,
    RunStarted,
)
from loopengt_core.model.events._task_events import (
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    GateFailed,
    GatePassed,
    OutputSubmitted,
    RetryScheduled,
    StepCompleted,
    StepFailed,
    TaskExpired,
    TaskHeld,
    TaskIssued,
    UsageRead,
)
from loopengt_core.model.events._workspace_events import (
    BranchesMerged,
    JoinDeferred,
    WorkspaceAccepted,
    WorktreeAdded,
)

AnyEvent = Annotated[
    RunStarted
    | RunForked
    | TaskIssued
    | OutputSubmitted
    | GatePassed
    | GateFailed
    | CommandRequested
    | CommandStarted
    | CommandAbandoned
    | CommandFinished
    | ApprovalRequested
    | ApprovalGiven
    | ApprovalRejected
    | RetryScheduled
    | TaskExpired
    | StepCompleted
    | StepFailed
    | CheckpointTaken
    | WorkspaceAccepted
    | WorktreeAdded
    | BranchesMerged
    | JoinDeferred
    | RunPaused
    | BudgetReached
    | TaskHeld
    | RunResumed
    | UsageRead
    | RunCompleted
    | RunFailed
    | RunCancelled,
    Field(discriminator="type"),
]
RunEnded = RunCompleted | RunFailed | RunCancelled
