"""The engine's decisions about a run as a whole rather than a task: cancel, fail, checkpoints, the
workspace and worktrees, merges, resuming a paused run and recording usage. `Engine` exposes each as
a method.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopengt_core.engine import issuing
from loopengt_core.engine.patterns import Move
from loopengt_core.engine.reading import workspace_files
from loopengt_core.engine.transaction import (
    Transaction,
)
from loopengt_core.model.budget import BudgetLimits
from loopengt_core.model.events import (
    AnyEvent,
    BranchesMerged,
    CheckpointTaken,
    CommandRequested,
    JoinDeferred,
    RunCancelled,
    RunFailed,
    RunResumed,
    UsageRead,
    WorkspaceAccepted,
    WorkspaceFiles,
    WorktreeAdded,
)
from loopengt_core.model.state import RunState
from loopengt_core.model.transcripts import Segment, TranscriptClient

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def cancel(engine: Engine, state: RunState, reason: str, now: datetime) -> list[AnyEvent]:
    """End an active run as cancelled, with `reason`."""
    engine.require_active(state)
    tx = Transaction(state, now)
    tx.emit(RunCancelled(seq=tx.seq, at=tx.at, reason=reason or "cancelled"))
    return tx.events


def fail(engine: Engine, state: RunState, reason: str, now: datetime) -> list[AnyEvent]:
    """End the run `failed`: whoever drives it found it cannot go on (its agent cannot start)."""
    engine.require_active(state)
    tx = Transaction(state, now)
    tx.emit(RunFailed(seq=tx.seq, at=tx.at, reason=reason or "failed"))
    return tx.events


def take_checkpoint(  # noqa: PLR0917 (the engine comes first, as self did)
    engine: Engine,
    state: RunState,
    checkpoint_id: str,
    label: str | None,
    now: datetime,
    workspace: dict[str, Any] | None = None,
) -> list[AnyEvent]:
    """`workspace` ({head, tree, commit, ref}): the files at the checkpoint and the commit keeping them."""
    tx = Transaction(state, now)
    tx.emit(
        CheckpointTaken(
            seq=tx.seq,
            at=tx.at,
            checkpoint_id=checkpoint_id,
            label=label,
            workspace=workspace_files(workspace),
        )
    )
    return tx.events


def accept_workspace(
    engine: Engine, state: RunState, workspace: dict[str, Any], changed: list[str], now: datetime
) -> list[AnyEvent]:
    """Files changed outside the loop are accepted as the run's state (resume with accept_drift)."""
    engine.require_active(state)
    files = WorkspaceFiles.model_validate(workspace)
    tx = Transaction(state, now)
    tx.emit(WorkspaceAccepted(seq=tx.seq, at=tx.at, head=files.head, tree=files.tree, changed=changed))
    return tx.events


def add_worktree(
    engine: Engine, state: RunState, step: str, *, path: str, branch: str, base: str, now: datetime
) -> list[AnyEvent]:
    """An isolated step's worktree, made by the service, becomes where its tasks work."""
    tx = Transaction(state, now)
    tx.emit(WorktreeAdded(seq=tx.seq, at=tx.at, step=step, path=path, branch=branch, base=base))
    return tx.events


def merge_branches(engine: Engine, state: RunState, merge: BranchesMerged, now: datetime) -> list[AnyEvent]:
    """A join's branches, merged by the service (`merge`'s seq and time are set here). On conflicts,
    a join with a `resolve` step defers its task to that step's, which gets the conflicts."""
    tx = Transaction(state, now)
    tx.emit(merge.model_copy(update={"seq": tx.seq, "at": tx.at}))
    resolve = engine.steps[merge.step].resolve
    task = next((t for t in tx.state.tasks.values() if t.step == merge.step), None)
    if merge.conflicts and resolve is not None and task is not None:
        tx.emit(JoinDeferred(seq=tx.seq, at=tx.at, step=merge.step, task_id=task.task_id, resolve=resolve))
        found = tx.state.steps[merge.step].visit_input["merge"]
        issuing.start_step(engine, tx, Move(resolve, {"merge": found, "join": merge.step}))
    return tx.events


def resume(
    engine: Engine,
    state: RunState,
    now: datetime,
    *,
    budget: BudgetLimits | None = None,
    hint: str | None = None,
) -> list[AnyEvent]:
    """Continue the run; commands paused by a setup error are requested again, spending no attempt.

    Tasks held while the run was paused (budget, stuck) are issued now, `hint` first in their
    feedback; `budget` raises the run's limits (a task still over them is held again).
    """
    if state.ended:
        return []
    tx = Transaction(state, now)
    held = list(state.held)
    tx.emit(RunResumed(seq=tx.seq, at=tx.at, reason="resumed", budget=budget, hint=hint))
    for task in held:
        feedback = "\n\n".join(f for f in (f"A person's hint: {hint}" if hint else None, task.feedback) if f)
        issuing.issue(engine, tx, engine.steps[task.step], task.attempt, feedback or None, task.input)
    for command in [c for c in state.commands.values() if c.setup_error is not None]:
        evaluation = state.evaluations.get(command.task_id)
        tx.emit(
            CommandRequested(
                seq=tx.seq,
                at=tx.at,
                command_id=command.command_id,
                kind=command.kind,
                step=command.step,
                task_id=command.task_id,
                gate=command.gate,
                argv=command.argv,
                attempt=evaluation.attempt if evaluation is not None else state.steps[command.step].attempt,
                timeout_seconds=command.timeout_seconds,
                not_before=tx.at,
                resumed=True,
            )
        )
    return tx.events


def record_usage(
    engine: Engine,
    state: RunState,
    segments: list[Segment],
    *,
    client: TranscriptClient,
    transcript: str,
    now: datetime,
) -> list[AnyEvent]:
    """Usage read from a transcript (`transcripts.segments`), one event per task it belongs to.

    A segment of a task neither open nor recently answered (`state.answers`) is left out; what
    the agent reported for a task with `step(usage=...)` wins over it (see `state`).
    """
    tx = Transaction(state, now)
    for segment in segments:
        task_id = segment.task_id
        if segment.usage is None or (task_id not in state.tasks and task_id not in state.answers):
            continue
        task = state.tasks.get(task_id)
        tx.emit(
            UsageRead(
                seq=tx.seq,
                at=tx.at,
                task_id=task_id,
                step=task.step if task is not None else task_id.rsplit("#", 1)[0],
                client=client,
                transcript=transcript,
                from_offset=segment.start,
                to_offset=segment.end,
                message_ids=segment.message_ids,
                usage=segment.usage,
            )
        )
    return tx.events
