"""What callers see of a run: the RunView, with `next_action` telling an agent what to do now."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from loopengt_core.engine import open_tasks_text
from loopengt_core.model.budget import Spend, SpendView
from loopengt_core.model.events import iso
from loopengt_core.model.limits import call_wait_seconds
from loopengt_core.model.state import Command, GateResult, RunState, RunStatus, StepStatus, TaskView


class StepView(BaseModel):
    """A step as callers see it: its status, attempts and spend."""

    name: str = Field(description="The step's name in the loop spec.")
    status: StepStatus = Field(
        description="pending, running (a task or command is open), waiting_approval, completed, failed or "
        "skipped.",
    )
    attempts: int = Field(
        description="Attempts made at this step over the whole run (retries and revisits included).",
    )
    spend: Spend = Field(default_factory=Spend, description="Usage this step's submissions reported.")


MAX_CHANGED_PATHS = 50


class WorkspaceView(BaseModel):
    """The run's files: the last recorded git state, and whether the work tree moved on since."""

    root: str = Field(
        description="The run's working directory (absolute): where its agents and commands work.",
    )
    head: str | None = Field(
        None,
        description="The git commit HEAD pointed at when last recorded; None in a repository without commits.",
    )
    tree: str = Field(
        description="The git tree of the files last recorded (tracked and untracked, not ignored).",
    )
    drift: bool = Field(False, description="Files changed since the last recorded step.")
    changed: list[str] = Field(default_factory=list, description="The changed paths (at most 50).")
    error: str | None = Field(None, description="Why the current state could not be read.")


class CheckView(BaseModel):
    """A command the server runs for the run: a command gate checking a submission, or a command step."""

    command_id: str = Field(description="`<task_id>:<gate>` (a gate) or the task id (a command step).")
    kind: Literal["gate", "step"] = Field(description="A command gate or a command step.")
    name: str = Field(description="The gate's name (kind gate) or the step's (kind step).")
    step: str = Field(description="The step it runs for.")
    task_id: str = Field(description="The task whose output it checks (a command step's own task).")
    status: Literal["running", "waiting"] = Field(
        description="running: started (started_at); waiting: due, not started yet (a retry's backoff, or "
        "its runner is being replaced)."
    )
    started_at: str | None = Field(None, description="When it started, ISO 8601 UTC.")
    last_output: str | None = Field(
        None, description="The last line of its output so far (shown by the server that runs it)."
    )


class RunView(BaseModel):
    """A run as callers see it: what get_run, start_run and resume answer. `next_action` says what to do now."""

    run_id: str = Field(description="The run's id: pass it to step, get_run, resume and cancel.")
    loop: str = Field(description="The name of the loop spec the run follows.")
    status: RunStatus = Field(
        description="running, waiting_approval (a person must answer a gate), paused (for a person; see "
        "paused_for), or ended: completed, failed, cancelled.",
    )
    turn: int = Field(
        description="Submissions recorded so far, success or failure (the spec's max_turns caps it)."
    )
    tasks: list[TaskView] = Field(
        description="The open tasks: work for an agent to do and submit with step(run_id, task_id, output).",
    )
    steps: list[StepView] = Field(
        description="Every step of the loop with its status and attempts, in spec order.",
    )
    final_output: Any = Field(
        None,
        description="The run's result once it completed (the output of the step that ended it); None before.",
    )
    error: str | None = Field(
        None,
        description="Why the run failed, was cancelled or paused; None otherwise.",
    )
    next_action: str = Field(
        description="What to do now, in words, for the agent reading this view (and for a person).",
    )
    parent_run_id: str | None = Field(
        None,
        description="The run this one was forked from (resume with a checkpoint); None for a new run.",
    )
    started_at: str = Field(description="When the run started, ISO 8601 UTC.")
    updated_at: str = Field(description="When the run last changed (its newest event), ISO 8601 UTC.")
    workspace: WorkspaceView | None = Field(
        None,
        description="The run's files as last recorded in git, and whether they changed since; None when the "
        "run has no git workspace.",
    )
    spend: SpendView = Field(
        default_factory=SpendView,
        description="Tokens and cost the run's submissions reported; `unknown` counts those without usage.",
    )
    paused_for: Literal["budget", "stuck", "setup"] | None = Field(
        None,
        description="Why a paused run waits for a person: budget (a limit reached), stuck (attempts that "
        "repeat), setup (a gate or command step's program cannot run).",
    )
    budget_warning: str | None = Field(None, description="An audit budget's reached limit (the run goes on).")
    checking: list[CheckView] = Field(
        default_factory=list,
        description="Commands the server is still running for the run (gates checking a submission, command "
        "steps): the run is checking while this is not empty, and the submission is already recorded. Wait "
        "with get_run(run_id, wait_seconds=N), which answers as soon as the run changes; do not submit again.",
    )


class StepAnswer(RunView):
    """What step answers: the run's view after the submission, with the gates' results so far."""

    accepted: bool = Field(
        description="Always true: the submission is recorded (one that cannot be, such as an expired or "
        "unknown task, is refused with an error instead).",
    )
    gate_results: list[GateResult] = Field(
        default_factory=list,
        description="The results of the step's gates that checked this submission so far; command gates still "
        "running show in `checking`.",
    )
    commands_pending: bool = Field(
        False, exclude=True, description="Service-internal: commands still to run."
    )


class RunSummary(BaseModel):
    """One run in a listing (list_runs, `loopengt runs`)."""

    run_id: str = Field(description="The run's id.")
    loop: str = Field(description="The name of the loop spec the run follows.")
    status: RunStatus | Literal["unreadable", "corrupt"] = Field(
        description="`corrupt`: its log or spec is damaged; `unreadable`: the store could not read it "
        "(permissions, too many open files, ...); `error` says why. Such a run is listed, never hidden."
    )
    turn: int = Field(description="Submissions recorded so far, success or failure.")
    started_at: str = Field(description="When the run started, ISO 8601 UTC.")
    updated_at: str = Field(description="When the run last changed, ISO 8601 UTC.")
    parent_run_id: str | None = Field(
        None,
        description="The run this one was forked from; None for a new run.",
    )
    error: str | None = Field(None, description="Why the run could not be read (corrupt or unreadable).")


def next_action(state: RunState) -> str:
    """What to do now, in words: for the agent reading the view, or the person it must tell."""
    run = state.run_id
    if state.status == "completed":
        return "The run completed; final_output holds the result. Nothing more to do."
    if state.status == "failed":
        return (
            f"The run failed ({state.error}). Read the trace, then start a new run, or fork from a checkpoint "
            f"with resume(run_id='{run}', checkpoint_id=...)."
        )
    if state.status == "cancelled":
        return "The run was cancelled. Start a new run to continue the work."
    blocked = [c for c in state.commands.values() if c.setup_error is not None]
    if state.status == "paused" and blocked:
        meanwhile = (
            f" Meanwhile the open tasks ({', '.join(state.tasks)}) can still be submitted."
            if state.tasks
            else " An agent: tell the person; until then there is nothing for you to do."
        )
        return (
            "Paused for a person: "
            + "; ".join(c.blocked_text() for c in blocked)
            + ". This is a setup problem, not the agent's: the submitted work is kept and no attempt is "
            f"spent. Once it is fixed, `loopengt resume {run}` (or resume(run_id='{run}')) runs the command "
            "again and the run goes on." + meanwhile
        )
    if state.status == "paused" and state.paused_for is not None:
        return (
            f"Paused for a person ({state.paused_for}): {state.error}. An agent: tell the person; until then "
            f"there is nothing for you to do. A person: `loopengt resume {run}` with "
            + (
                "--budget-tokens N / --budget-usd X / --budget-seconds S"
                if state.paused_for == "budget"
                else "--hint TEXT (the hint becomes feedback to the next attempt)"
            )
            + "; the held task is issued then, nothing is re-done."
        )
    if state.budget_warning and state.status == "running":
        return f"Budget warning (audit, the run goes on): {state.budget_warning}. " + _work(state)
    return _work(state)


def _workdirs(state: RunState) -> str:
    """Where tasks with a worktree of their own work (isolation: worktree): said, so no agent edits the
    run's directory instead; a join with conflicts is told so."""
    placed = [t for t in state.tasks.values() if t.workdir is not None]
    if not placed:
        return ""
    where = "; ".join(f"{t.task_id} in {t.workdir}" for t in placed)
    conflicted = [
        t.task_id
        for t in placed
        if (merge := t.input.get("merge", {})).get("conflicts") and "resolved_by" not in merge
    ]
    resolve = (
        f" Task {', '.join(conflicted)} starts from a merge with conflicts (input.merge.conflicts): resolve "
        "the conflict markers in those files first."
        if conflicted
        else ""
    )
    return f" Work (edit files, run commands) only in the task's workdir: {where}.{resolve}"


def _judges(state: RunState) -> str:
    """Judge tasks are said to be another agent's: whoever submitted the judged output is refused."""
    judging = [t for t in state.tasks.values() if t.judging is not None]
    if not judging:
        return ""
    which = "; ".join(f"{t.task_id} (role '{t.agent}') judges {t.judging}" for t in judging)
    return (
        f" Judge tasks are for another agent than the one that submitted the output they judge: {which}. "
        "If you submitted that output, leave the judge task to another session."
    )


def _work(state: RunState) -> str:
    run = state.run_id
    if state.tasks:
        ids = list(state.tasks)
        if len(ids) == 1:
            return (
                f"Do task '{ids[0]}' as its instructions say, then submit the result with "
                f"step(run_id='{run}', task_id='{ids[0]}', output=...)." + _workdirs(state) + _judges(state)
            )
        return (
            f"Do the {len(ids)} open tasks ({', '.join(ids)}), in any order or in parallel; submit each with "
            f"step(run_id='{run}', task_id=..., output=...)." + _workdirs(state) + _judges(state)
        )
    if state.approval is not None:
        return (
            f"Wait: gate '{state.approval.gate}' of step '{state.approval.step}' needs a person's approval "
            f"(in the editor's prompt, or `loopengt approve {run}` / `loopengt approve {run} --reject "
            f"--comment ...`). You cannot approve it; call get_run later."
        )
    if state.due_commands():
        names = ", ".join(_command_text(c) for c in state.due_commands())
        return (
            f"Checking: the server is running {names}; your submission is recorded. Wait for the result with "
            f"get_run(run_id='{run}', wait_seconds={call_wait_seconds()}), which answers as soon as the run "
            "changes; repeat while checking is not empty. Do not submit again."
        )
    return f"Nothing is open ({open_tasks_text(state)}); call resume(run_id='{run}') to continue the run."


def _command_text(command: Command) -> str:
    return (
        f"gate '{command.gate}' of step '{command.step}'"
        if command.kind == "gate"
        else f"step '{command.step}'"
    )


def checks(state: RunState) -> list[CheckView]:
    """The run's due commands as the view shows them; `started_at` is its claim's (lease minus timeout and
    grace), which any process can read from the log."""
    out = []
    for c in state.due_commands():
        claimed = c.claimed_at() if c.runner is not None else None
        started = iso(claimed) if claimed is not None else None
        out.append(
            CheckView(
                command_id=c.command_id,
                kind=c.kind,
                name=(c.gate or c.step) if c.kind == "gate" else c.step,
                step=c.step,
                task_id=c.task_id,
                status="running" if started is not None else "waiting",
                started_at=started,
            )
        )
    return out


def _view_fields(state: RunState) -> dict[str, Any]:
    return {
        "run_id": state.run_id,
        "loop": state.loop,
        "status": state.status,
        "turn": state.turn,
        "tasks": [TaskView.model_validate(t, from_attributes=True) for t in state.tasks.values()],
        "steps": [
            StepView(name=s.name, status=s.status, attempts=s.attempts, spend=s.spend.model_copy())
            for s in state.steps.values()
        ],
        "final_output": state.final_output,
        "error": state.error,
        "next_action": next_action(state),
        "parent_run_id": state.parent_run_id,
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "workspace": (
            WorkspaceView(root=state.workspace.root, head=state.workspace.head, tree=state.workspace.tree)
            if state.workspace is not None
            else None
        ),
        "spend": SpendView.of(state.spend, state.turn),
        "paused_for": state.paused_for
        or (
            "setup"
            if state.status == "paused" and any(c.setup_error for c in state.commands.values())
            else None
        ),
        "budget_warning": state.budget_warning,
        "checking": checks(state),
    }


V = TypeVar("V", bound=RunView)


def with_drift(view: V, changed: list[str] | None = None, *, error: str | None = None) -> V:
    """`view` with the work tree's drift from its last recorded state (computed by the service)."""
    if view.workspace is None or (not changed and error is None):
        return view
    run = view.run_id
    if error is not None:
        workspace = view.workspace.model_copy(update={"error": error})
        note = f"The run's files cannot be read: {error}. "
    else:
        paths = changed or []
        workspace = view.workspace.model_copy(update={"drift": True, "changed": paths[:MAX_CHANGED_PATHS]})
        names = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        if view.tasks:
            then = (
                "if they are your edits for an open task, submitting it records them; otherwise review them "
                f"(`loopengt diff {run}`)"
            )
        elif view.status in ("running", "paused"):
            then = (
                f"review them (`loopengt diff {run}`), then resume(run_id='{run}', accept_drift=true) records "
                "them and continues, or restore them"
            )
        else:
            then = f"review them (`loopengt diff {run}`)"
        note = f"Files changed outside the loop since the last recorded step: {names}; {then}. "
    return view.model_copy(update={"workspace": workspace, "next_action": note + view.next_action})


def run_view(state: RunState) -> RunView:
    """The RunView of a run's state."""
    return RunView(**_view_fields(state))


def step_answer(state: RunState, gate_results: list[GateResult]) -> StepAnswer:
    """`step`'s answer: the run's view after the submission, with the gate results so far."""
    return StepAnswer(
        **_view_fields(state),
        accepted=True,
        gate_results=[g.model_copy() for g in gate_results],
        commands_pending=bool(state.due_commands()),
    )


def run_summary(state: RunState) -> RunSummary:
    """The short form of a run that `list_runs` answers."""
    return RunSummary(
        run_id=state.run_id,
        loop=state.loop,
        status=state.status,
        turn=state.turn,
        started_at=state.started_at,
        updated_at=state.updated_at,
        parent_run_id=state.parent_run_id,
    )
