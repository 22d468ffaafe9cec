"""Issuing work: starting the steps the pattern moves to, and issuing an agent step's task with its input,
instructions, schema and deadline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loopengt_core.engine import briefing, budgeting, commands
from loopengt_core.engine.patterns import Move
from loopengt_core.engine.transaction import (
    Transaction,
)
from loopengt_core.model.events import (
    BudgetReached,
    RunPaused,
    TaskHeld,
    TaskIssued,
    by_reference,
    iso,
)
from loopengt_core.model.spec import Step
from loopengt_core.model.state import output_refs

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def start_step(engine: Engine, tx: Transaction, move: Move) -> None:
    """Start the step the pattern moves to: request its command, or issue its agent's task."""
    step = engine.steps[move.step]
    if step.run is not None:
        commands.request_command_step(engine, tx, step, step.run, 1, tx.now)
    else:
        issue(engine, tx, step, 1, move.feedback, briefing.task_input_of(engine, tx.state, step, move.input))


def issue(  # noqa: PLR0917 (the engine comes first, as self did)
    engine: Engine,
    tx: Transaction,
    step: Step,
    attempt: int,
    feedback: str | None,
    task_input: dict[str, Any],
) -> None:
    """Issue an agent step's task, or hold it while the run is paused (a reached budget pauses it; audit mode only warns)."""
    state = tx.state
    if state.status == "paused" and state.paused_for is None:
        pass  # paused by a setup error: open tasks go on
    elif engine.budget is not None and engine.budget.mode == "audit":
        warning = budgeting.budget_text(engine, state, step.name, tx.now)
        if (
            warning is not None
            and warning.split(" reached")[0] != (state.budget_warning or "").split(" reached")[0]
        ):
            tx.emit(BudgetReached(seq=tx.seq, at=tx.at, detail=warning))
    else:
        reached = budgeting.budget_reached(engine, state, step, tx.now)
        if reached is not None and state.status != "paused":
            tx.emit(RunPaused(seq=tx.seq, at=tx.at, reason="budget", detail=reached))
        if state.status == "paused":
            tx.emit(
                TaskHeld(
                    seq=tx.seq,
                    at=tx.at,
                    step=step.name,
                    attempt=attempt,
                    feedback=feedback,
                    input=task_input,
                )
            )
            return
    task_id = f"{step.name}#{state.steps[step.name].issued + 1}"
    timeout = briefing.step_timeout(engine, step)
    assert step.agent is not None, "an agent step names its agent (the spec's validation)"
    logged, refs = by_reference(task_input, output_refs(state))
    tx.emit(
        TaskIssued(
            seq=tx.seq,
            at=tx.at,
            task_id=task_id,
            step=step.name,
            agent=step.agent,
            attempt=attempt,
            instructions=briefing.instructions(
                engine, state, step, attempt=attempt, feedback=feedback, task_input=task_input
            ),
            input=logged,
            output_schema=briefing.output_schema(engine, step),
            feedback=feedback,
            expires_at=iso(tx.now + timedelta(seconds=timeout)) if timeout else None,
            input_refs=refs or None,
        )
    )
