"""A run's state and the fold that builds it: `apply(state, event)` is the only code that changes it.

The package exports what the rest of loopengt uses: the state's records (`loopengt_core.model.state.tasks`,
`loopengt_core.model.state.records`, `loopengt_core.model.state.run`), the fold (`loopengt_core.model.state.fold`) and the
lookups the service reads from a state or a log (`loopengt_core.model.state.task_appliers`).
"""

from loopengt_core.model.state.fold import apply, project_run
from loopengt_core.model.state.records import LEASE_GRACE_SECONDS, Answer, Command
from loopengt_core.model.state.run import RunState
from loopengt_core.model.state.task_appliers import answer_in_log, output_refs, workdir
from loopengt_core.model.state.tasks import GateResult, RunStatus, StepStatus, TaskState, TaskView

__all__ = [
    "LEASE_GRACE_SECONDS",
    "Answer",
    "Command",
    "GateResult",
    "RunState",
    "RunStatus",
    "StepStatus",
    "TaskState",
    "TaskView",
    "answer_in_log",
    "apply",
    "output_refs",
    "project_run",
    "workdir",
]
