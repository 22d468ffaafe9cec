"""The events of an agent task: issued, submitted, judged by gates and people, retried, expired,
held, its usage read, and its step completed or failed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from loopengt_core.model.budget import Usage
from loopengt_core.model.events._base import TYPE_DOC, WORKSPACE_DOC, Event, WorkspaceFiles
from loopengt_core.model.spec import ApprovalChannel
from loopengt_core.model.stuck import Compared


class TaskIssued(Event):
    """An agent was given a task: one attempt of an agent step."""

    type: Literal["task_issued"] = Field("task_issued", description=TYPE_DOC)
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

    type: Literal["output_submitted"] = Field("output_submitted", description=TYPE_DOC)
    task_id: str = Field(description="The task.")
    step: str = Field(description="The task's step.")
    attempt: int = Field(description="The task's attempt.")
    outcome: Literal["success", "failure"] = Field("success", description="What the agent reported.")
    output: Any = Field(None, description="The output, plain JSON.")
    error: str | None = Field(None, description="The agent's reason, with outcome failure.")
    digest: str | None = Field(None, description="Identity of the submission, to answer a repeat the same.")
    workspace: WorkspaceFiles | None = Field(None, description=WORKSPACE_DOC)
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

    type: Literal["gate_passed"] = Field("gate_passed", description=TYPE_DOC)


class GateFailed(_GateVerdict):
    """A gate failed an output; its feedback goes to the next attempt."""

    type: Literal["gate_failed"] = Field("gate_failed", description=TYPE_DOC)
    on_failure: Literal["retry", "abort"] | None = Field(None, description="What the gate's failure does.")


class ApprovalRequested(Event):
    """An approval gate waits for a person."""

    type: Literal["approval_requested"] = Field("approval_requested", description=TYPE_DOC)
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

    type: Literal["approval_given"] = Field("approval_given", description=TYPE_DOC)


class ApprovalRejected(_ApprovalAnswer):
    """A person rejected; the attempt failed with the comment as feedback."""

    type: Literal["approval_rejected"] = Field("approval_rejected", description=TYPE_DOC)


class RetryScheduled(Event):
    """A failed attempt is tried again (a task or a command run follows)."""

    type: Literal["retry_scheduled"] = Field("retry_scheduled", description=TYPE_DOC)
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

    type: Literal["task_expired"] = Field("task_expired", description=TYPE_DOC)
    task_id: str = Field(description="The task.")
    step: str = Field(description="The task's step.")
    after_seconds: float | None = Field(None, description="From issue to expiry.")


class StepCompleted(Event):
    """An output passed all its gates: the step's output."""

    type: Literal["step_completed"] = Field("step_completed", description=TYPE_DOC)
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

    type: Literal["step_failed"] = Field("step_failed", description=TYPE_DOC)
    step: str = Field(description="The step.")
    reason: str | None = Field(None, description="Why, in one line.")
    fail_run_later: bool = Field(
        False, description="Other branches are still running: the run fails once they finish."
    )


class TaskHeld(Event):
    """A task the engine would have issued while the run is paused: `resume` issues it then."""

    type: Literal["task_held"] = Field("task_held", description=TYPE_DOC)
    step: str = Field(description="The step.")
    attempt: int = Field(description="The attempt it would be.")
    feedback: str | None = Field(None, description="Feedback for the attempt.")
    input: dict[str, Any] = Field(default_factory=dict, description="The task's input.")


class UsageRead(Event):
    """Usage read from a client's transcript (a hook's `transcript_path`) and attributed to one task.

    It covers the transcript's bytes [from_offset, to_offset): the next read starts at to_offset, so no
    line is counted twice. It adds to the run's spend only for a task whose submission reported no usage
    of its own: what the agent reports with `step(usage=...)` wins, and replaces this if it comes later.
    """

    type: Literal["usage_read"] = Field("usage_read", description=TYPE_DOC)
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
