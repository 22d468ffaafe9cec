"""What a run's state keeps besides steps and tasks: commands to run, approvals, answers, transcripts,
the workspace and worktrees, and the two helpers that record the workspace from an event."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import (
    WorkspaceAccepted,
    WorkspaceFiles,
    parse_iso,
)
from loopengt_core.model.state.tasks import Additive, GateResult

if TYPE_CHECKING:
    from loopengt_core.model.state.run import RunState


LEASE_GRACE_SECONDS = 30.0  # a claim's lease: the command's timeout plus this


class Command(BaseModel):
    """A command the service must run: a command step or a command gate. Its result comes back as an event."""

    command_id: str = Field(description="`<task_id>:<gate>` (a gate) or the task id (a command step).")
    kind: Literal["step", "gate"] = Field(
        description="A command step (`run:` in the spec) or a command gate.",
    )
    step: str = Field(description="The step it runs for.")
    task_id: str = Field(description="The task whose output it checks (a command step's own task).")
    gate: str | None = Field(None, description="The gate's name (kind gate); None for a command step.")
    argv: list[str] = Field(
        description="The program and its arguments, run without a shell in the run's directory (or the task's "
        "workdir).",
    )
    timeout_seconds: float = Field(
        description="How long it may run before it is killed and counts as failed.",
    )
    not_before: str = Field(
        description="When it may start, ISO 8601 UTC (later than requested after a retry's backoff).",
    )
    runner: str | None = Field(
        None,
        description="The process that claimed it (None: unclaimed); another takes it over once the lease "
        "ends.",
    )
    lease_until: str | None = Field(
        None,
        description="When the runner's claim ends unless its result is recorded, ISO 8601 UTC.",
    )
    setup_error: str | None = Field(
        None,
        description="Its program could not be found or started (why, and the fix): the run is paused for a "
        "person, and resume requests it again.",
    )

    def claimed_at(self) -> datetime | None:
        """When its current claim was made (None when unclaimed): the lease is the claim's moment plus the
        timeout and LEASE_GRACE_SECONDS, so any process can tell from the log."""
        if self.lease_until is None:
            return None
        return parse_iso(self.lease_until) - timedelta(seconds=self.timeout_seconds + LEASE_GRACE_SECONDS)

    def blocked_text(self) -> str:
        """What cannot run, for a person: `gate 'tests' of step 'fix' cannot run: <setup_error>`."""
        what = (
            f"gate '{self.gate}' of step '{self.step}'"
            if self.kind == "gate"
            else f"command step '{self.step}'"
        )
        return f"{what} cannot run: {self.setup_error}"


class Approval(BaseModel):
    """An approval a person must give before the run goes on."""

    task_id: str = Field(description="The task whose output waits for the approval.")
    step: str = Field(description="The step of that task.")
    gate: str = Field(description="The approval gate's name.")
    prompt: str | None = Field(
        None,
        description="What the person is asked (the gate's prompt); None: the default question.",
    )
    requested_at: str = Field(description="When the approval was requested, ISO 8601 UTC.")


class Answer(Additive):
    """What `step` answered for a task, kept so the same submission gets the same answer."""

    added: ClassVar[tuple[str, ...]] = ("usage",)

    digest: str | None = Field(
        None,
        description="A digest of the submitted output: the same task submitted again with it gets the same "
        "answer.",
    )
    accepted: bool = Field(True, description="Whether the submission was accepted.")
    gate_results: list[GateResult] = Field(
        default_factory=list,
        description="The gates' results given in the answer.",
    )
    expired_after_seconds: float | None = Field(
        None,
        description="Set when the task had expired: how long after its issue it was submitted.",
    )
    usage: Literal["reported", "transcript"] | None = Field(
        None,
        description="Whose usage the task's spend is: the agent's (`step(usage=...)`, which wins) or a "
        "transcript's; None: unknown.",
    )


class TranscriptMark(BaseModel):
    """How far a client's transcript has been read for this run (usage_read)."""

    offset: int = Field(description="The byte where the next read starts.")
    last: str | None = Field(None, description="The last message counted (not counted again).")


class WorkspaceRecord(BaseModel):
    """The run's files as last recorded: git `tree` (tracked + untracked-not-ignored), `head`, and where."""

    root: str = Field(description="The run's working directory (commands run there).")
    head: str | None = Field(
        None,
        description="The commit HEAD pointed at; None in a repository without commits.",
    )
    tree: str = Field(description="The git tree of the run's files (tracked and untracked, not ignored).")
    seq: int = Field(0, description="The event that recorded it.")
    commit: str | None = Field(
        None, description="The commit keeping this tree, when a checkpoint recorded it."
    )


class WorktreeRecord(BaseModel):
    """A git worktree of the run (worktree_added, branches_merged): where one step works."""

    kind: Literal["branch", "join"] = Field(description="An isolated step's own, or a join's merge.")
    path: str = Field(description="The worktree's directory (absolute).")
    branch: str = Field(description="Its branch, `loopengt/<run>/<step>`.")
    base: str = Field(description="The commit it was made from.")
    commit: str | None = Field(None, description="join: the last merge commit.")


def workspace_record(found: WorkspaceFiles, seq: int) -> WorkspaceRecord:
    """The workspace a run_started or run_forked event binds the run to (its root must be named)."""
    if found.root is None:
        raise StoreCorrupt(f"event {seq} binds the run to files without naming their root")
    return WorkspaceRecord(root=found.root, head=found.head, tree=found.tree, seq=seq)


def record_workspace(
    state: RunState, found: WorkspaceFiles | WorkspaceAccepted | None, *, commit: str | None = None
) -> None:
    """An event that carries the workspace state (head, tree) makes it the last recorded one."""
    if found is not None and state.workspace is not None:
        state.workspace = WorkspaceRecord(
            root=state.workspace.root, head=found.head, tree=found.tree, seq=state.seq + 1, commit=commit
        )
