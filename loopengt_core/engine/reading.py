"""What the engine reads out of a state for others: the open tasks as text, the next deadline, and the
verdicts and workspace files its decisions record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loopengt_core.engine.transaction import Transaction
from loopengt_core.model.events import (
    GateFailed,
    GatePassed,
    WorkspaceFiles,
    parse_iso,
)
from loopengt_core.model.spec import OnFailure
from loopengt_core.model.state import GateResult, RunState


def emit_verdict(
    tx: Transaction,
    task_id: str,
    step: str,
    result: GateResult,
    on_failure: OnFailure,
    *,
    score: float | None = None,
) -> None:
    """A gate's result as GatePassed or GateFailed (`score`: a judge gate's; None leaves it out)."""
    tx.emit(
        GatePassed(
            seq=tx.seq,
            at=tx.at,
            task_id=task_id,
            step=step,
            gate=result.name,
            feedback=result.feedback,
            score=score,
        )
        if result.passed
        else GateFailed(
            seq=tx.seq,
            at=tx.at,
            task_id=task_id,
            step=step,
            gate=result.name,
            feedback=result.feedback,
            on_failure=on_failure,
            score=score,
        )
    )


def workspace_files(workspace: dict[str, Any] | None) -> WorkspaceFiles | None:
    """An event's `workspace`, with the keys the service recorded; None (left out) when it records none."""
    return WorkspaceFiles.model_validate(workspace) if workspace else None


def open_tasks_text(state: RunState) -> str:
    """What is open in the run, for an error message or next action: its tasks, or why there are none."""
    if state.tasks:
        return "open tasks: " + ", ".join(state.tasks)
    if state.approval is not None:
        return f"no open tasks: the run waits for approval of gate '{state.approval.gate}'"
    if state.due_commands():
        return (
            "no open tasks: command " + ", ".join(c.command_id for c in state.due_commands()) + " is pending"
        )
    if state.commands:
        return (
            "no open tasks: the run is paused ("
            + "; ".join(c.blocked_text() for c in state.commands.values())
            + ")"
        )
    return f"no open tasks (status: {state.status})"


def next_deadline(state: RunState) -> datetime | None:
    """The earliest moment a tick or a command becomes due, for the server's timer."""
    moments = [parse_iso(t.expires_at) for t in state.tasks.values() if t.expires_at]
    moments += [parse_iso(c.not_before) for c in state.due_commands() if c.runner is None]
    return min(moments) if moments else None
