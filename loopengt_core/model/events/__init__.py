"""Events: the immutable facts of a run, numbered by `seq`. A run's state is the fold of its events.

Each type of fact is a frozen model named in the past tense (`TaskIssued`, `GateFailed`, ...), with
`seq` and `at` from the common base `Event` and a `type` that discriminates the union `AnyEvent`.
The engine builds them (`loopengt_core.engine`), `loopengt_core.model.state.apply` folds them, and the other
folds (metrics, telemetry, `show --follow`, the headless runner) read them by class.

Stored, an event is the record `{"seq", "type", "at", "data": {...}}` (with a checksum on disk), as
since 0.1.0; `to_record` and `event_from_record` are the only code that maps between the two.
"""

from loopengt_core.model.events._base import Event, WorkspaceFiles, iso, parse_iso
from loopengt_core.model.events._command_events import (
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
)
from loopengt_core.model.events._records import (
    EVENT_CLASSES,
    EVENT_TYPES,
    TERMINAL_EVENTS,
    EventRecord,
    event_data,
    event_from_record,
    to_record,
)
from loopengt_core.model.events._refs import by_reference, materialised
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
from loopengt_core.model.events._types import (
    AnyEvent,
    RunEnded,
)
from loopengt_core.model.events._workspace_events import (
    BranchesMerged,
    JoinDeferred,
    WorkspaceAccepted,
    WorktreeAdded,
)

__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "TERMINAL_EVENTS",
    "AnyEvent",
    "ApprovalGiven",
    "ApprovalRejected",
    "ApprovalRequested",
    "BranchesMerged",
    "BudgetReached",
    "CheckpointTaken",
    "CommandAbandoned",
    "CommandFinished",
    "CommandRequested",
    "CommandStarted",
    "Event",
    "EventRecord",
    "GateFailed",
    "GatePassed",
    "JoinDeferred",
    "OutputSubmitted",
    "RetryScheduled",
    "RunCancelled",
    "RunCompleted",
    "RunEnded",
    "RunFailed",
    "RunForked",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "StepCompleted",
    "StepFailed",
    "TaskExpired",
    "TaskHeld",
    "TaskIssued",
    "UsageRead",
    "WorkspaceAccepted",
    "WorkspaceFiles",
    "WorktreeAdded",
    "by_reference",
    "event_data",
    "event_from_record",
    "iso",
    "materialised",
    "parse_iso",
    "to_record",
]
