"""The command side of the engine's decisions: claiming a pending command (a command step or a
command gate), deciding what its outcome means, and requesting a command step's run.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from loopengt_core.engine import evaluation
from loopengt_core.engine.gates import command_feedback, tail
from loopengt_core.engine.reading import workspace_files
from loopengt_core.engine.transaction import (
    COMMAND_OUTPUT_CHARS,
    DEFAULT_COMMAND_TIMEOUT_SECONDS,
    Transaction,
)
from loopengt_core.model.errors import Conflict
from loopengt_core.model.events import (
    AnyEvent,
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    GateFailed,
    GatePassed,
    iso,
)
from loopengt_core.model.spec import Step
from loopengt_core.model.state import RunState

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def claim_command(
    engine: Engine,
    state: RunState,
    command_id: str,
    *,
    runner: str,
    lease_until: datetime,
    now: datetime,
    abandoned: Literal["runner_died", "lease_expired"] | None = None,
    abandoned_at: str | None = None,
) -> list[AnyEvent]:
    """Claim a command for `runner`. `abandoned`: an earlier claim is given up (why), which the trace shows;
    `abandoned_at`: when that claim was made."""
    command = state.commands.get(command_id)
    if command is None:
        raise Conflict(f"command {command_id!r} is not pending in run '{state.run_id}'", run_id=state.run_id)
    tx = Transaction(state, now)
    if abandoned is not None and command.runner is not None:
        tx.emit(
            CommandAbandoned(
                seq=tx.seq,
                at=tx.at,
                command_id=command_id,
                runner=command.runner,
                started_at=abandoned_at,
                reason=abandoned,
            )
        )
    tx.emit(
        CommandStarted(
            seq=tx.seq, at=tx.at, command_id=command_id, runner=runner, lease_until=iso(lease_until)
        )
    )
    return tx.events


def finish_command(
    engine: Engine,
    state: RunState,
    command_id: str,
    *,
    exit_code: int | None,
    output: str,
    duration_seconds: float,
    timed_out: bool,
    now: datetime,
    workspace: dict[str, Any] | None = None,
    setup_error: str | None = None,
    cancelled_by: str | None = None,
) -> list[AnyEvent]:
    """Record a command's result (run by the service) and decide what follows.

    `cancelled_by`: who stopped it (its process group was killed): a failed attempt, which the policy
    retries or fails as it would a timed-out gate.

    `workspace` ({head, tree}): the run's files right after the command. `setup_error`: its program
    could not be found or started (why, and the fix); that is no attempt's fault, so nothing is
    decided: the run pauses for a person and `resume` requests the command again.
    """
    command = state.commands.get(command_id)
    if command is None:
        raise Conflict(f"command {command_id!r} is not pending in run '{state.run_id}'", run_id=state.run_id)
    passed = exit_code == 0 and not timed_out and cancelled_by is None
    text = tail(output, COMMAND_OUTPUT_CHARS)
    seconds = round(duration_seconds, 3)
    result = {"exit_code": exit_code, "output": text, "duration_seconds": seconds, "timed_out": timed_out}
    tx = Transaction(state, now)
    tx.emit(
        CommandFinished(
            seq=tx.seq,
            at=tx.at,
            command_id=command_id,
            exit_code=exit_code,
            output=text,
            duration_seconds=seconds,
            timed_out=timed_out,
            result=result,
            setup_error=setup_error or None,  # None: no key, as ever
            workspace=workspace_files(workspace),
            cancelled_by=cancelled_by or None,  # None: no key
        )
    )
    if setup_error:
        return tx.events
    feedback = command_feedback(
        command.argv,
        exit_code,
        text,
        timed_out=timed_out,
        seconds=duration_seconds,
        cancelled_by=cancelled_by,
    )
    if command.kind == "gate":
        gate = engine.gates[command.gate or ""]
        if passed:
            tx.emit(
                GatePassed(
                    seq=tx.seq,
                    at=tx.at,
                    task_id=command.task_id,
                    step=command.step,
                    gate=gate.name,
                    feedback=None,
                )
            )
            evaluation.continue_after(engine, tx, command.task_id)
        else:
            tx.emit(
                GateFailed(
                    seq=tx.seq,
                    at=tx.at,
                    task_id=command.task_id,
                    step=command.step,
                    gate=gate.name,
                    feedback=gate.feedback or feedback,
                    on_failure=gate.on_failure,
                )
            )
            evaluation.fail_step(
                engine, tx, command.step, gate.feedback or feedback, abort=gate.on_failure == "abort"
            )
    elif passed:
        evaluation.evaluate(engine, tx, command.task_id)
    else:
        evaluation.fail_step(engine, tx, command.step, feedback)
    evaluation.finish(engine, tx)
    return tx.events


def request_command_step(  # noqa: PLR0917 (the engine comes first, as self did)
    engine: Engine, tx: Transaction, step: Step, argv: list[str], attempt: int, not_before: datetime
) -> None:
    """Ask the service to run a command step (its task id as the command's), not before `not_before`."""
    task_id = f"{step.name}#{tx.state.steps[step.name].issued + 1}"
    tx.emit(
        CommandRequested(
            seq=tx.seq,
            at=tx.at,
            command_id=task_id,
            kind="step",
            step=step.name,
            task_id=task_id,
            gate=None,
            argv=argv,
            attempt=attempt,
            timeout_seconds=step.timeout_seconds or DEFAULT_COMMAND_TIMEOUT_SECONDS,
            not_before=iso(not_before),
        )
    )
