"""The events of a command (a command step's run or a command gate's check): requested, started,
abandoned, finished."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from loopengt_core.model.events._base import TYPE_DOC, WORKSPACE_DOC, Event, WorkspaceFiles


class CommandRequested(Event):
    """The service is to run a command: a command step or a command gate."""

    type: Literal["command_requested"] = Field("command_requested", description=TYPE_DOC)
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

    type: Literal["command_started"] = Field("command_started", description=TYPE_DOC)
    command_id: str = Field(description="The command.")
    runner: str = Field(description="`host:pid` of the process running it.")
    lease_until: str = Field(description="When the claim lapses.")


class CommandAbandoned(Event):
    """A claimed command was given up without a result: its runner died (or its lease ran out), so another
    process runs it again. Written just before that process's own command_started."""

    type: Literal["command_abandoned"] = Field("command_abandoned", description=TYPE_DOC)
    command_id: str = Field(description="The command.")
    runner: str = Field(description="`host:pid` of the process that claimed it and never finished it.")
    started_at: str | None = Field(None, description="When that claim was made (its command_started).")
    reason: Literal["runner_died", "lease_expired"] = Field(
        description="How it was known: `runner_died` (that process is gone, on this host), `lease_expired`."
    )


class CommandFinished(Event):
    """A command ended (or could not start: `setup_error`)."""

    type: Literal["command_finished"] = Field("command_finished", description=TYPE_DOC)
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
    workspace: WorkspaceFiles | None = Field(None, description=WORKSPACE_DOC)
    cancelled_by: str | None = Field(
        None,
        description="Who stopped it (e.g. a client's tasks/cancel): its process group was killed and the "
        "attempt counts as failed. Only present when set.",
    )
