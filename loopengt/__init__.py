"""loopengt's Python API: start, drive and inspect durable loop runs from your own code.

    import loopengt

    with loopengt.open(".loopengt") as runs:
        view = runs.start("loop.yaml")
        task = view.tasks[0]
        view = runs.step(view.run_id, task.task_id, {"summary": "done"})

A thin layer over the engine the CLI and the MCP server use (`loopengt_core.service.runs.Runs`): the same
store, the same events, the same answers. Runs started here can be driven, inspected and resumed by
`loopengt` commands or an MCP client, and the other way round.
"""

from __future__ import annotations

from loopengt._client import Client, open, validate
from loopengt_core.engine.validation import Problem, Validation
from loopengt_core.engine.view import RunSummary, RunView, StepAnswer
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.state import GateResult, TaskView
from loopengt_core.service.forks import CheckpointInfo

__all__ = [
    "CheckpointInfo",
    "Client",
    "GateResult",
    "LoopengtError",
    "Problem",
    "RunSummary",
    "RunView",
    "StepAnswer",
    "TaskView",
    "Validation",
    "open",
    "validate",
]
