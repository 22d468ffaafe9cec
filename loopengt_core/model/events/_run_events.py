"""The events of a run as a whole: it starts or forks, pauses and resumes, keeps checkpoints, ends."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loopengt_core.model.budget import BudgetLimits
from loopengt_core.model.events._base import TYPE_DOC, Event, WorkspaceFiles


class RunStarted(Event):
    """A run began. Always the first event of a run that is not a fork."""

    type: Literal["run_started"] = Field("run_started", description=TYPE_DOC)
    run_id: str = Field(description="The run's id.")
    loop: str = Field(description="The spec's name.")
    goal: str = Field("", description="The spec's goal.")
    spec_hash: str = Field("", description="First 16 hex digits of the SHA-256 of the frozen spec text.")
    context: dict[str, Any] = Field(default_factory=dict, description="The spec's context with the inputs.")
    seed: int = Field(0, description="Seeds the run's jitter, so replay decides the same delays.")
    steps: list[str] = Field(description="The spec's step names, in order.")
    parent_run_id: str | None = Field(None, description="Never written by 0.2; read if a record has it.")
    workspace: WorkspaceFiles | None = Field(None, description="Root, head and tree the run started from.")
    context_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Memory read from earlier runs (`context_from`), as every task's input.memory carries it: "
        "per run {run_id, loop, status, seq read through, final_output, steps (each step's last accepted "
        "output), shortened (when cut to the size bound)}; written only when the run names any.",
    )


class RunForked(Event):
    """A run began as a copy of another run's state at one of its checkpoints."""

    data_keys: ClassVar[dict[str, str]] = {"checkpoint_seq": "seq"}

    type: Literal["run_forked"] = Field("run_forked", description=TYPE_DOC)
    run_id: str = Field(description="The new run's id.")
    parent_run_id: str = Field(description="The run it was forked from.")
    checkpoint_id: str = Field(description="The parent's checkpoint it starts from.")
    checkpoint_seq: int = Field(description="The parent's seq at that checkpoint (`seq` in the record).")
    state: dict[str, Any] = Field(description="The parent's RunState at the checkpoint, as JSON.")
    workspace: WorkspaceFiles | None = Field(None, description="The worktree the fork works in, if any.")


class CheckpointTaken(Event):
    """A checkpoint: a run can be forked from here."""

    type: Literal["checkpoint_taken"] = Field("checkpoint_taken", description=TYPE_DOC)
    checkpoint_id: str = Field(description="`cp-<n>`.")
    label: str | None = Field(None, description="The label given.")
    workspace: WorkspaceFiles | None = Field(
        None, description="The files at the checkpoint and the commit and ref keeping them."
    )


class RunPaused(Event):
    """The run stopped issuing work for a person: a budget limit was reached, or the loop is stuck."""

    type: Literal["run_paused"] = Field("run_paused", description=TYPE_DOC)
    reason: Literal["budget", "stuck"] = Field(description="budget: a limit was reached; stuck: no progress.")
    detail: str = Field(description="What was reached or what repeated, since when, and the last feedback.")


class BudgetReached(Event):
    """An audit budget's limit was reached: recorded and shown as a warning; the run goes on."""

    type: Literal["budget_reached"] = Field("budget_reached", description=TYPE_DOC)
    detail: str = Field(description="Which limit, and the spend that reached it.")


class RunResumed(Event):
    """`resume` continued the run (a paused run runs again)."""

    type: Literal["run_resumed"] = Field("run_resumed", description=TYPE_DOC)
    reason: str | None = Field(None, description="Always `resumed` today.")
    budget: BudgetLimits | None = Field(
        None,
        description="Limits raised by the person resuming; they replace policy.budget's. Only when given.",
    )
    hint: str | None = Field(
        None, description="A person's hint, given as feedback to the next attempt. Only when given."
    )


class RunCompleted(Event):
    """The run ended with a final output."""

    type: Literal["run_completed"] = Field("run_completed", description=TYPE_DOC)
    final_output: Any = Field(None, description="The last accepted output.")
    reason: str | None = Field(None, description="Which stop rule ended it.")


class RunFailed(Event):
    """The run ended failed."""

    type: Literal["run_failed"] = Field("run_failed", description=TYPE_DOC)
    reason: str | None = Field(None, description="Why.")


class RunCancelled(Event):
    """The run was cancelled."""

    type: Literal["run_cancelled"] = Field("run_cancelled", description=TYPE_DOC)
    reason: str | None = Field(None, description="Why.")
