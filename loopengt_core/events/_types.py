"""One model per event type. Field order is the order of the keys in a record's `data`.

A field with a default is one a record may lack (older logs, or a key writers leave out when it does not
apply); `to_record` writes back exactly the keys an event was built or read with.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field
from typing_extensions import TypedDict

from loopengt_core.budget import BudgetLimits, Usage
from loopengt_core.events._base import Event, WorkspaceFiles
from loopengt_core.spec import ApprovalChannel
from loopengt_core.stuck import Compared

_WORKSPACE = "The run's files right after it happened; only when the run records its files."
_TYPE = "What happened: the record's `type`, which picks the class."


class RunStarted(Event):
    """A run began. Always the first event of a run that is not a fork."""

    type: Literal["run_started"] = Field("run_started", description=_TYPE)
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

    type: Literal["run_forked"] = Field("run_forked", description=_TYPE)
    run_id: str = Field(description="The new run's id.")
    parent_run_id: str = Field(description="The run it was forked from.")
    checkpoint_id: str = Field(description="The parent's checkpoint it starts from.")
    checkpoint_seq: int = Field(description="The parent's seq at that checkpoint (`seq` in the record).")
    state: dict[str, Any] = Field(description="The parent's RunState at the checkpoint, as JSON.")
    workspace: WorkspaceFiles | None = Field(None, description="The worktree the fork works in, if any.")


class TaskIssued(Event):
    """An agent was given a task: one attempt of an agent step."""

    type: Literal["task_issued"] = Field("task_issued", description=_TYPE)
    task_id: str = Field(description="`<step>#<n>`, n counting the step's tasks and command runs.")
    step: str = Field(description="The step.")
    agent: str = Field(description="The agent to do it.")
    attempt: int = Field(description="Attempt within the step's current visit, from 1.")
    instructions: str = Field(description="The rendered task text.")
    input: dict[str, Any] | None = Field(
        None, description="The task's input (goal, context, what came before)."
    )
    output_schema: dict[str, Any] | None = Field(None, description="JSON Schema the output must match.")
    feedback: str | None = Field(None, description="Why the previous attempt failed.")
    expires_at: str | None = Field(None, description="When the task expires without a submission.")
    input_refs: dict[str, int] | None = Field(
        None,
        description="Earlier outputs the input holds by reference: a JSON Pointer into `input` (null there) -> "
        "the seq of the event recording the output (output_submitted's output, command_finished's result). "
        "Only when any; logs before 0.3 hold the outputs in `input`.",
    )
    judging: str | None = Field(
        None,
        description="A judge gate's task: the id of the task whose output it judges (its input holds that "
        "output, the rubric and the threshold). Only on judge tasks, which spend none of the step's attempts.",
    )
    judge_gate: str | None = Field(None, description="A judge task's gate (only on judge tasks).")


class OutputSubmitted(Event):
    """An agent submitted a task's output (or reported that it failed)."""

    type: Literal["output_submitted"] = Field("output_submitted", description=_TYPE)
    task_id: str = Field(description="The task.")
    step: str = Field(description="The task's step.")
    attempt: int = Field(description="The task's attempt.")
    outcome: Literal["success", "failure"] = Field("success", description="What the agent reported.")
    output: Any = Field(None, description="The output, plain JSON.")
    error: str | None = Field(None, description="The agent's reason, with outcome failure.")
    digest: str | None = Field(None, description="Identity of the submission, to answer a repeat the same.")
    workspace: WorkspaceFiles | None = Field(None, description=_WORKSPACE)
    usage: Usage | None = Field(
        None, description="Tokens and cost the agent reported for the work; absent: unknown (never zero)."
    )
    submitted_by: str | None = Field(
        None,
        description="Who submitted it, as the server saw the caller: `mcp-session:<id>`, `principal:<name>` "
        "(a bearer token's), `headless:<agent command>`; absent: unknown (logs before 0.4, direct API calls). "
        "A judge task submitted by whoever submitted the output it judges is refused.",
    )


class _GateVerdict(Event):
    """What a gate said about an output (its `type` says passed or failed)."""

    task_id: str = Field(description="The task whose output was checked.")
    step: str = Field(description="The task's step.")
    gate: str = Field(
        description="The gate (`output_schema`: the step's; `final_output_schema`: the spec's)."
    )
    feedback: str | None = Field(None, description="What the gate said: why it failed; None for most passes.")
    score: float | None = Field(
        None, description="A judge gate's score, 0 to 1 (its reasons are in feedback); only on judge gates."
    )


class GatePassed(_GateVerdict):
    """A gate (schema, pattern check, condition or command) passed an output."""

    type: Literal["gate_passed"] = Field("gate_passed", description=_TYPE)


class GateFailed(_GateVerdict):
    """A gate failed an output; its feedback goes to the next attempt."""

    type: Literal["gate_failed"] = Field("gate_failed", description=_TYPE)
    on_failure: Literal["retry", "abort"] | None = Field(None, description="What the gate's failure does.")


class CommandRequested(Event):
    """The service is to run a command: a command step or a command gate."""

    type: Literal["command_requested"] = Field("command_requested", description=_TYPE)
    command_id: str = Field(description="The task id (a step) or `<task_id>:<gate>` (a gate).")
    kind: Literal["step", "gate"] = Field(description="A command step or a command gate.")
    step: str = Field(description="The step.")
    task_id: str = Field(description="The task it runs for (a command step's own task id).")
    gate: str | None = Field(None, description="The gate, for kind gate.")
    argv: list[str] = Field(description="The program and its arguments.")
    attempt: int = Field(description="The step's attempt it runs for.")
    timeout_seconds: float = Field(description="Killed after this long.")
    not_before: str = Field(description="Not run before this moment (a retry's backoff).")
    resumed: bool = Field(
        False, description="Requested again by `resume` after a setup error: no attempt is spent (only true)."
    )


class CommandStarted(Event):
    """A process claimed a command with a lease; a lease that runs out lets another process run it."""

    type: Literal["command_started"] = Field("command_started", description=_TYPE)
    command_id: str = Field(description="The command.")
    runner: str = Field(description="`host:pid` of the process running it.")
    lease_until: str = Field(description="When the claim lapses.")


class CommandAbandoned(Event):
    """A claimed command was given up without a result: its runner died (or its lease ran out), so another
    process runs it again. Written just before that process's own command_started."""

    type: Literal["command_abandoned"] = Field("command_abandoned", description=_TYPE)
    command_id: str = Field(description="The command.")
    runner: str = Field(description="`host:pid` of the process that claimed it and never finished it.")
    started_at: str | None = Field(None, description="When that claim was made (its command_started).")
    reason: Literal["runner_died", "lease_expired"] = Field(
        description="How it was known: `runner_died` (that process is gone, on this host), `lease_expired`."
    )


class CommandFinished(Event):
    """A command ended (or could not start: `setup_error`)."""

    type: Literal["command_finished"] = Field("command_finished", description=_TYPE)
    command_id: str = Field(description="The command.")
    exit_code: int | None = Field(None, description="Its exit code; None when it was killed or never ran.")
    output: str = Field("", description="The tail of its stdout and stderr.")
    duration_seconds: float = Field(0.0, description="How long it ran, measured by the service.")
    timed_out: bool = Field(False, description="It was killed at its timeout.")
    result: dict[str, Any] | None = Field(
        None, description="The four fields above as one object: a command step's output."
    )
    setup_error: str | None = Field(
        None,
        description="Its program could not be found or started (why, and the fix): nothing is decided and "
        "the run pauses for a person. Only present when set.",
    )
    workspace: WorkspaceFiles | None = Field(None, description=_WORKSPACE)
    cancelled_by: str | None = Field(
        None,
        description="Who stopped it (e.g. a client's tasks/cancel): its process group was killed and the "
        "attempt counts as failed. Only present when set.",
    )


class ApprovalRequested(Event):
    """An approval gate waits for a person."""

    type: Literal["approval_requested"] = Field("approval_requested", description=_TYPE)
    task_id: str = Field(description="The task whose output waits.")
    step: str = Field(description="The task's step.")
    gate: str = Field(description="The approval gate.")
    prompt: str | None = Field(None, description="The question put to the person.")


class _ApprovalAnswer(Event):
    """A person answered an approval gate (its `type` says how)."""

    task_id: str = Field(description="The task whose output waited.")
    step: str = Field(description="The task's step.")
    gate: str = Field(description="The approval gate.")
    comment: str | None = Field(None, description="What the person said (feedback on a rejection).")
    by: str | None = Field(None, description="Who answered, as the channel tells it.")
    via: ApprovalChannel | None = Field(
        None,
        description="The channel the answer came through: `cli` (`loopengt approve`), `elicitation` (a form "
        "in an MCP client), `web` (the web view). None in logs written before it was recorded.",
    )
    client: str | None = Field(
        None, description="Elicitation: the MCP client that showed the form (its name and version)."
    )


class ApprovalGiven(_ApprovalAnswer):
    """A person approved."""

    type: Literal["approval_given"] = Field("approval_given", description=_TYPE)


class ApprovalRejected(_ApprovalAnswer):
    """A person rejected; the attempt failed with the comment as feedback."""

    type: Literal["approval_rejected"] = Field("approval_rejected", description=_TYPE)


class RetryScheduled(Event):
    """A failed attempt is tried again (a task or a command run follows)."""

    type: Literal["retry_scheduled"] = Field("retry_scheduled", description=_TYPE)
    step: str = Field(description="The step.")
    attempt: int = Field(description="The attempt to come.")
    delay_seconds: float = Field(description="Backoff before a command step runs again (0 for agents).")
    not_before: str = Field(description="When the attempt may start.")
    feedback: str | None = Field(None, description="Why the last attempt failed.")
    compared: Compared | None = Field(
        None,
        description="The failed attempt as stuck detection compares it; absent when `policy.stuck: false`.",
    )


class TaskExpired(Event):
    """A task got no submission before it expired."""

    type: Literal["task_expired"] = Field("task_expired", description=_TYPE)
    task_id: str = Field(description="The task.")
    step: str = Field(description="The task's step.")
    after_seconds: float | None = Field(None, description="From issue to expiry.")


class StepCompleted(Event):
    """An output passed all its gates: the step's output."""

    type: Literal["step_completed"] = Field("step_completed", description=_TYPE)
    step: str = Field(description="The step.")
    output: Any = Field(None, description="The accepted output, in logs before 0.3 (now: `output_seq`).")
    task_id: str | None = Field(None, description="The task that produced it.")
    output_seq: int | None = Field(
        None,
        description="The seq of the event recording the output (output_submitted's output, command_finished's "
        "result), which is not repeated here. Absent in logs before 0.3, which hold `output`.",
    )


class StepFailed(Event):
    """A step failed for good (no retries left, or a gate aborted it)."""

    type: Literal["step_failed"] = Field("step_failed", description=_TYPE)
    step: str = Field(description="The step.")
    reason: str | None = Field(None, description="Why, in one line.")
    fail_run_later: bool = Field(
        False, description="Other branches are still running: the run fails once they finish."
    )


class CheckpointTaken(Event):
    """A checkpoint: a run can be forked from here."""

    type: Literal["checkpoint_taken"] = Field("checkpoint_taken", description=_TYPE)
    checkpoint_id: str = Field(description="`cp-<n>`.")
    label: str | None = Field(None, description="The label given.")
    workspace: WorkspaceFiles | None = Field(
        None, description="The files at the checkpoint and the commit and ref keeping them."
    )


class WorkspaceAccepted(Event):
    """Files changed outside the loop were accepted as the run's state (resume with accept_drift)."""

    type: Literal["workspace_accepted"] = Field("workspace_accepted", description=_TYPE)
    head: str | None = Field(None, description="HEAD when accepted.")
    tree: str = Field(description="The accepted tree.")
    changed: list[str] = Field(default_factory=list, description="The files changed outside the loop.")


class WorktreeAdded(Event):
    """An isolated step (`isolation: worktree`) got its own git worktree, before its task was handed out.

    Recorded after git made it: a crash in between leaves a worktree no event names, which the next
    transition replaces (nothing was handed out in it) and `loopengt prune` removes.
    """

    type: Literal["worktree_added"] = Field("worktree_added", description=_TYPE)
    step: str = Field(description="The step that works there (every attempt of it).")
    path: str = Field(description="The worktree's directory (absolute), the task's `workdir`.")
    branch: str = Field(description="Its branch, `loopengt/<run>/<step>`.")
    base: str = Field(
        description="The commit it was made from: the run's recorded files (tree, on the recorded HEAD) when "
        "the step started, never the user's HEAD of the moment."
    )


class MergedBranch(TypedDict):
    """One branch merged at a join, in spec order."""

    step: Annotated[str, Field(description="The isolated step whose work it holds.")]
    branch: Annotated[str, Field(description="Its branch.")]
    commit: Annotated[str, Field(description="The commit of its worktree's files that was merged.")]


class MergeConflict(TypedDict):
    """A file two merged branches both changed in the same place."""

    path: Annotated[str, Field(description="The file, from the top of the work tree.")]
    hunks: Annotated[
        list[str],
        Field(description="Each conflicted region as the merged file holds it, from <<<<<<< to >>>>>>>."),
    ]


class BranchesMerged(Event):
    """A join step's isolated dependencies were merged, in spec order, into the run's line of work: a
    worktree of the run on its own branch (never the user's checkout). The join's tasks work and its
    command gates run there; conflicts stay in the files, with markers, and go to the join's task."""

    type: Literal["branches_merged"] = Field("branches_merged", description=_TYPE)
    step: str = Field(description="The join step.")
    path: str = Field(description="The line's worktree (absolute): the join task's `workdir`.")
    branch: str = Field(
        description="The line's branch, `loopengt/<run>/<join step>`; kept when the run ends."
    )
    base: str = Field(description="The commit the merges started from (the first branch's base).")
    merged: list[MergedBranch] = Field(description="The branches merged, in spec order.")
    commit: str = Field(description="The last merge commit: the line's files before the join task works.")
    conflicts: list[MergeConflict] = Field(
        default_factory=list, description="Files left with conflict markers, for the join's task to resolve."
    )


class JoinDeferred(Event):
    """A join's merge had conflicts and the join names a `resolve` step: the join's task (issued with the
    merge, not yet worked on) is withdrawn and the resolve step's task gets the conflicts, in the join's
    worktree. When the resolve step completes, the join's task is issued again on the resolved files."""

    type: Literal["join_deferred"] = Field("join_deferred", description=_TYPE)
    step: str = Field(description="The join step.")
    task_id: str = Field(description="The join's task withdrawn (never handed to an agent's work).")
    resolve: str = Field(description="The step that resolves the conflicts (the join's `resolve`).")


class RunPaused(Event):
    """The run stopped issuing work for a person: a budget limit was reached, or the loop is stuck."""

    type: Literal["run_paused"] = Field("run_paused", description=_TYPE)
    reason: Literal["budget", "stuck"] = Field(description="budget: a limit was reached; stuck: no progress.")
    detail: str = Field(description="What was reached or what repeated, since when, and the last feedback.")


class BudgetReached(Event):
    """An audit budget's limit was reached: recorded and shown as a warning; the run goes on."""

    type: Literal["budget_reached"] = Field("budget_reached", description=_TYPE)
    detail: str = Field(description="Which limit, and the spend that reached it.")


class TaskHeld(Event):
    """A task the engine would have issued while the run is paused: `resume` issues it then."""

    type: Literal["task_held"] = Field("task_held", description=_TYPE)
    step: str = Field(description="The step.")
    attempt: int = Field(description="The attempt it would be.")
    feedback: str | None = Field(None, description="Feedback for the attempt.")
    input: dict[str, Any] = Field(default_factory=dict, description="The task's input.")


class RunResumed(Event):
    """`resume` continued the run (a paused run runs again)."""

    type: Literal["run_resumed"] = Field("run_resumed", description=_TYPE)
    reason: str | None = Field(None, description="Always `resumed` today.")
    budget: BudgetLimits | None = Field(
        None,
        description="Limits raised by the person resuming; they replace policy.budget's. Only when given.",
    )
    hint: str | None = Field(
        None, description="A person's hint, given as feedback to the next attempt. Only when given."
    )


class UsageRead(Event):
    """Usage read from a client's transcript (a hook's `transcript_path`) and attributed to one task.

    It covers the transcript's bytes [from_offset, to_offset): the next read starts at to_offset, so no
    line is counted twice. It adds to the run's spend only for a task whose submission reported no usage
    of its own: what the agent reports with `step(usage=...)` wins, and replaces this if it comes later.
    """

    type: Literal["usage_read"] = Field("usage_read", description=_TYPE)
    task_id: str = Field(description="The task the usage is attributed to (open, or submitted recently).")
    step: str = Field(description="The task's step.")
    client: Literal["claude-code", "codex"] = Field(description="The client whose transcript was read.")
    transcript: str = Field(description="The transcript: 16 hex digits of the SHA-256 of its absolute path.")
    from_offset: int = Field(description="The first byte of the transcript covered.")
    to_offset: int = Field(description="The byte after the last line covered: where the next read starts.")
    message_ids: list[str] = Field(
        default_factory=list,
        description="The messages counted, in order (Claude Code: message ids; Codex: each token count's "
        "running totals), so a message straddling to_offset is not counted again.",
    )
    usage: Usage = Field(description="The usage of those messages, summed; a field none reported is absent.")


class RunCompleted(Event):
    """The run ended with a final output."""

    type: Literal["run_completed"] = Field("run_completed", description=_TYPE)
    final_output: Any = Field(None, description="The last accepted output.")
    reason: str | None = Field(None, description="Which stop rule ended it.")


class RunFailed(Event):
    """The run ended failed."""

    type: Literal["run_failed"] = Field("run_failed", description=_TYPE)
    reason: str | None = Field(None, description="Why.")


class RunCancelled(Event):
    """The run was cancelled."""

    type: Literal["run_cancelled"] = Field("run_cancelled", description=_TYPE)
    reason: str | None = Field(None, description="Why.")


AnyEvent = Annotated[
    RunStarted
    | RunForked
    | TaskIssued
    | OutputSubmitted
    | GatePassed
    | GateFailed
    | CommandRequested
    | CommandStarted
    | CommandAbandoned
    | CommandFinished
    | ApprovalRequested
    | ApprovalGiven
    | ApprovalRejected
    | RetryScheduled
    | TaskExpired
    | StepCompleted
    | StepFailed
    | CheckpointTaken
    | WorkspaceAccepted
    | WorktreeAdded
    | BranchesMerged
    | JoinDeferred
    | RunPaused
    | BudgetReached
    | TaskHeld
    | RunResumed
    | UsageRead
    | RunCompleted
    | RunFailed
    | RunCancelled,
    Field(discriminator="type"),
]
RunEnded = RunCompleted | RunFailed | RunCancelled
