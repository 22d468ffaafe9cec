"""How command, workspace, worktree, pause, budget, usage and run-ending events change a run's state."""

from __future__ import annotations

from loopengt_core.model.budget import BudgetLimits, summed
from loopengt_core.model.events import (
    BranchesMerged,
    BudgetReached,
    CheckpointTaken,
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    JoinDeferred,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunPaused,
    RunResumed,
    UsageRead,
    WorkspaceAccepted,
    WorktreeAdded,
)
from loopengt_core.model.state.records import Command, TranscriptMark, WorktreeRecord, record_workspace
from loopengt_core.model.state.registry import on
from loopengt_core.model.state.run import RunState
from loopengt_core.model.state.tasks import Evaluation, RunStatus


@on(CommandRequested)
def _command_requested(state: RunState, e: CommandRequested) -> None:
    state.commands[e.command_id] = Command(
        command_id=e.command_id,
        kind=e.kind,
        step=e.step,
        task_id=e.task_id,
        gate=e.gate,
        argv=list(e.argv),
        timeout_seconds=e.timeout_seconds,
        not_before=e.not_before,
    )
    if e.kind == "step" and not e.resumed:  # `resumed`: requested again after a setup error
        step = state.steps[e.step]
        step.status, step.issued, step.attempt = "running", step.issued + 1, e.attempt
        step.attempts += 1
        if e.attempt == 1:
            step.visits += 1


@on(CommandStarted)
def _command_started(state: RunState, e: CommandStarted) -> None:
    command = state.commands[e.command_id]
    command.runner, command.lease_until = e.runner, e.lease_until


@on(CommandAbandoned)
def _command_abandoned(state: RunState, e: CommandAbandoned) -> None:
    command = state.commands[e.command_id]
    command.runner, command.lease_until = None, None


@on(CommandFinished)
def _command_finished(state: RunState, e: CommandFinished) -> None:
    record_workspace(state, e.workspace)
    if e.setup_error:  # its program could not start: the command waits, the run pauses for a person
        command = state.commands[e.command_id]
        command.runner, command.lease_until, command.setup_error = None, None, e.setup_error
        state.status, state.error = "paused", command.blocked_text()
        return
    command = state.commands.pop(e.command_id)
    if command.kind == "step" and e.exit_code == 0:
        evaluation = state.evaluations[command.task_id] = Evaluation(
            task_id=command.task_id,
            step=command.step,
            attempt=state.steps[command.step].attempt,
            output=e.result,
        )
        evaluation._output_seq = e.seq


@on(CheckpointTaken)
def _checkpoint_taken(state: RunState, e: CheckpointTaken) -> None:
    state.checkpoints += 1
    record_workspace(state, e.workspace, commit=e.workspace.commit if e.workspace else None)


@on(WorkspaceAccepted)
def _workspace_accepted(state: RunState, e: WorkspaceAccepted) -> None:
    record_workspace(state, e)


@on(WorktreeAdded)
def _worktree_added(state: RunState, e: WorktreeAdded) -> None:
    state.worktrees[e.step] = WorktreeRecord(kind="branch", path=e.path, branch=e.branch, base=e.base)
    for task in state.tasks.values():
        if task.step == e.step:
            task.workdir = e.path


@on(BranchesMerged)
def _branches_merged(state: RunState, e: BranchesMerged) -> None:
    state.worktrees[e.step] = WorktreeRecord(
        kind="join", path=e.path, branch=e.branch, base=e.base, commit=e.commit
    )
    state.line = e.path
    merge = {"branches": [dict(m) for m in e.merged], "commit": e.commit, "branch": e.branch}
    if e.conflicts:
        merge["conflicts"] = [dict(c) for c in e.conflicts]
    step = state.steps[e.step]
    step.visit_input = {**step.visit_input, "merge": merge}  # retries of the join see it too
    for task in state.tasks.values():
        if task.step == e.step:
            task.workdir = e.path
            task.input = {**task.input, "merge": merge}


@on(JoinDeferred)
def _join_deferred(state: RunState, e: JoinDeferred) -> None:
    task = state.tasks.pop(e.task_id)
    step = state.steps[e.step]
    step.attempts -= 1  # never worked on: the join's task issued after the resolve step is its visit
    if task.attempt == 1:
        step.visits -= 1
    state.resolving[e.resolve] = e.step


@on(RunPaused)
def _run_paused(state: RunState, e: RunPaused) -> None:
    state.status, state.paused_for, state.error = "paused", e.reason, e.detail


@on(BudgetReached)
def _budget_reached(state: RunState, e: BudgetReached) -> None:
    state.budget_warning = e.detail


@on(RunResumed)
def _run_resumed(state: RunState, e: RunResumed) -> None:
    if state.status == "paused":
        state.status = "waiting_approval" if state.approval is not None else "running"
        state.error = None
    state.paused_for = None
    if e.budget is not None:
        base = state.budget or BudgetLimits()
        state.budget = base.model_copy(update=e.budget.model_dump(exclude_none=True))
    state.held = []  # resume issues them in the same transition (or holds them again)
    if e.hint is not None or e.budget is not None:  # a person looked: a stuck step starts afresh
        for step in state.steps.values():
            step.streak = []


def _end(state: RunState, status: RunStatus, at: str, *, error: str | None = None) -> None:
    state.status, state.ended_at, state.error = status, at, error
    state.tasks.clear()
    state.commands.clear()
    state.evaluations.clear()
    state.approval = None
    for step in state.steps.values():
        if step.status == "pending":
            step.status = "skipped"
        elif step.status in ("running", "waiting_approval"):
            step.status = "failed" if status == "failed" else "skipped"


@on(UsageRead)
def _usage_read(state: RunState, e: UsageRead) -> None:
    """A transcript's usage: counted for an open task (taken back if its submission reports usage) or a
    submitted one that reported none; never for a task whose agent reported its own."""
    state.transcripts[e.transcript] = TranscriptMark(
        offset=e.to_offset, last=e.message_ids[-1] if e.message_ids else None
    )
    spends = (state.spend, state.steps[e.step].spend) if e.step in state.steps else (state.spend,)
    task = state.tasks.get(e.task_id)
    if task is not None:
        task.transcript_usage = summed(task.transcript_usage, e.usage)
        for spend in spends:
            spend.add(e.usage, count=False)  # counted as a known task when it is submitted
        return
    answer = state.answers.get(e.task_id)
    if answer is None or answer.usage == "reported":
        return
    for spend in spends:
        spend.add(e.usage, count=answer.usage is None)
    answer.usage = "transcript"


@on(RunCompleted)
def _run_completed(state: RunState, e: RunCompleted) -> None:
    state.final_output = e.final_output
    _end(state, "completed", e.at)


@on(RunFailed)
def _run_failed(state: RunState, e: RunFailed) -> None:
    _end(state, "failed", e.at, error=e.reason)


@on(RunCancelled)
def _run_cancelled(state: RunState, e: RunCancelled) -> None:
    _end(state, "cancelled", e.at, error=e.reason)
