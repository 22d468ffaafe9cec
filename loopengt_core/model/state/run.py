"""A run's whole state (`RunState`): the fold of its events, and what snapshots and checkpoints store."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loopengt_core.model.budget import BudgetLimits, Spend
from loopengt_core.model.state.records import (
    Answer,
    Approval,
    Command,
    TranscriptMark,
    WorkspaceRecord,
    WorktreeRecord,
)
from loopengt_core.model.state.tasks import (
    ENDED,
    Additive,
    Evaluation,
    HeldTask,
    RunStatus,
    StepState,
    TaskState,
)


class RunState(Additive):
    """A run's whole state: the fold of its events (`apply`), and what snapshots and checkpoints store."""

    added: ClassVar[tuple[str, ...]] = (
        "worktrees",
        "line",
        "resolving",
        "spend",
        "paused_for",
        "budget_warning",
        "held",
        "budget",
        "transcripts",
        "memory",
    )

    run_id: str = Field(description="The run's id.")
    loop: str = Field(description="The name of the loop spec the run follows.")
    goal: str = Field("", description="The spec's goal when the run started.")
    status: RunStatus = Field(
        "running",
        description="running, waiting_approval, paused, completed, failed or cancelled.",
    )
    seq: int = Field(0, description="The seq of the last event folded into this state.")
    turn: int = Field(
        0, description="Submissions recorded so far, success or failure (the spec's max_turns caps it)."
    )
    seed: int = Field(
        0,
        description="The run's random seed: retry jitter is drawn from it, so a replay decides the same.",
    )
    spec_hash: str = Field(
        "",
        description="The hash of the spec the run started with, to tell a changed spec on resume.",
    )
    started_at: str = Field(description="When the run started, ISO 8601 UTC.")
    updated_at: str = Field(description="When its newest event was recorded, ISO 8601 UTC.")
    ended_at: str | None = Field(
        None,
        description="When it completed, failed or was cancelled; None while it goes on.",
    )
    parent_run_id: str | None = Field(None, description="The run it was forked from; None for a new run.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The spec's context with the run's inputs merged in: every task's `input.context`.",
    )
    steps: dict[str, StepState] = Field(default_factory=dict, description="Every step's state, by name.")
    tasks: dict[str, TaskState] = Field(default_factory=dict, description="The open tasks, by task id.")
    evaluations: dict[str, Evaluation] = Field(
        default_factory=dict,
        description="Submitted outputs whose gates have not all answered, by task id.",
    )
    commands: dict[str, Command] = Field(
        default_factory=dict,
        description="Commands the service must run (command steps and command gates), by command id.",
    )
    approval: Approval | None = Field(
        None,
        description="The approval a person must answer; None when none is asked.",
    )
    answers: dict[str, Answer] = Field(
        default_factory=dict,
        description="What `step` answered for recent tasks (at most 64), by task id, so a repeated submission "
        "gets the same answer.",
    )
    last_step: str | None = Field(
        None,
        description="The step that last accepted an output (its output is the final one when the run ends).",
    )
    failing: str | None = Field(None, description="Why the run fails once its open branches finish.")
    final_output: Any = Field(None, description="The run's result once it completed.")
    error: str | None = Field(
        None,
        description="Why the run failed, was cancelled or paused; None otherwise.",
    )
    checkpoints: int = Field(0, description="Checkpoints taken of the run so far (numbers their ids).")
    workspace: WorkspaceRecord | None = Field(
        None,
        description="The run's files as last recorded in git; None without a git workspace.",
    )
    worktrees: dict[str, WorktreeRecord] = Field(
        default_factory=dict, description="The run's git worktrees, by the step that works in each."
    )
    line: str | None = Field(
        None,
        description="Where the run's line of work goes on after a join merged worktree branches: that "
        "join's worktree (the latest). Later steps without a worktree of their own work there, and their "
        "command gates and command steps run there; None: in the run's directory.",
    )
    resolving: dict[str, str] = Field(
        default_factory=dict,
        description="A join's `resolve` step at work on the join's merge conflicts -> the join, whose task "
        "is issued when the resolve step completes.",
    )
    spend: Spend = Field(default_factory=Spend, description="Usage reported over the run.")
    paused_for: Literal["budget", "stuck"] | None = Field(
        None, description="Why the run paused itself (a setup error pauses with `commands` blocked)."
    )
    budget_warning: str | None = Field(None, description="An audit budget's reached limit.")
    held: list[HeldTask] = Field(default_factory=list, description="Tasks to issue on resume.")
    budget: BudgetLimits | None = Field(None, description="Run limits raised by resume(budget=...).")
    transcripts: dict[str, TranscriptMark] = Field(
        default_factory=dict, description="Transcripts read for usage, by their key (usage_read)."
    )
    memory: list[dict[str, Any]] = Field(
        default_factory=list, description="Earlier runs' outputs (context_from), each task's input.memory."
    )

    @property
    def ended(self) -> bool:
        """Whether the run completed, failed or was cancelled (nothing more can happen to it)."""
        return self.status in ENDED

    def due_commands(self) -> list[Command]:
        """Pending commands the service is to run: all but those paused by a setup error."""
        return [c for c in self.commands.values() if c.setup_error is None]

    def active_steps(self) -> set[str]:
        """Steps with work in flight: an open task, a pending command, an output under evaluation, a task
        held by a pause."""
        return (
            {t.step for t in self.tasks.values()}
            | {h.step for h in self.held}
            | {c.step for c in self.commands.values()}
            | {e.step for e in self.evaluations.values()}
            | set(self.resolving.values())
        )
