"""Events: the immutable facts of a run, numbered by `seq`. A run's state is the fold of its events.

One model with a `type` and a `data` mapping keeps the log format stable and cheap to read; the
meaning of each type's data is documented in EVENT_TYPES and applied in `engine.apply`.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "run_started",  # run_id, loop, goal, spec_hash, context, seed, parent_run_id, workspace {root, head, tree}
    "run_forked",  # parent_run_id, checkpoint_id, seq, state: the parent's state at the checkpoint, workspace
    "task_issued",  # task_id, step, agent, attempt, visit, instructions, input, output_schema, feedback, expires_at
    "output_submitted",  # task_id, step, attempt, outcome, output, error, digest, workspace {head, tree}
    "gate_passed",  # task_id, step, gate, feedback
    "gate_failed",  # task_id, step, gate, feedback, on_failure
    # command_id, kind (gate|step), step, task_id, gate, argv, timeout_seconds, not_before; resumed: true when
    # `resume` requests again a command paused by a setup error (no attempt spent)
    "command_requested",
    "command_started",  # command_id, runner, lease_until
    # command_id, exit_code, output, duration_seconds, timed_out, workspace; setup_error: its program could
    # not be found or started (why, and the fix): nothing is decided, the run pauses for a person
    "command_finished",
    "approval_requested",  # task_id, step, gate, prompt
    "approval_given",  # task_id, step, gate, comment, by
    "approval_rejected",  # task_id, step, gate, comment, by
    "retry_scheduled",  # step, attempt, delay_seconds, not_before, feedback
    "task_expired",  # task_id, step, after_seconds
    "step_completed",  # step, output, task_id
    "step_failed",  # step, reason
    "checkpoint_taken",  # checkpoint_id, label, workspace {head, tree, commit, ref}
    "workspace_accepted",  # head, tree, changed: files changed outside the loop, accepted on resume
    "run_resumed",  # reason
    "run_completed",  # final_output, reason
    "run_failed",  # reason
    "run_cancelled",  # reason
]
EVENT_TYPES: tuple[str, ...] = typing.get_args(EventType)
TERMINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_cancelled"})


class Event(BaseModel):
    """One fact in a run's log; `at` is ISO 8601 UTC, `seq` counts from 1 without gaps."""

    model_config = ConfigDict(frozen=True)

    seq: int = Field(ge=1, description="Position in the run's log, from 1, without gaps.")
    type: EventType = Field(description="What happened, snake_case past tense.")
    at: str = Field(description="When it was decided, ISO 8601 UTC.")
    data: dict[str, Any] = Field(default_factory=dict, description="The fact's details, by type.")


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, the one timestamp format of the log."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
