"""The budget and wall-clock side of the engine's decisions: the limits that apply to a run, the
budget line a task's instructions carry, and when a run pauses for its budget or ends for its time.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from loopengt_core.engine.transaction import Transaction
from loopengt_core.model.budget import BudgetLimits, Spend, over, raised
from loopengt_core.model.events import (
    AnyEvent,
    BudgetReached,
    RunPaused,
    parse_iso,
)
from loopengt_core.model.spec import Step
from loopengt_core.model.state import RunState

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def run_limits(engine: Engine, state: RunState) -> BudgetLimits | None:
    """The run's budget limits: policy.budget's, raised by resume(budget=...)."""
    if engine.budget is None:
        return state.budget
    return raised(engine.budget, state.budget)


def budget_text(engine: Engine, state: RunState, step: str | None, now: datetime) -> str | None:
    """Which limit the run (or `step`) has reached, in words; None while under every limit."""
    limits = run_limits(engine, state)
    elapsed = (now - parse_iso(state.started_at)).total_seconds()
    reached = over(limits, state.spend, elapsed) if limits is not None else None
    step_limits = engine.budget.steps.get(step) if engine.budget is not None and step else None
    if reached is None and step_limits is not None and step is not None:
        step_reached = over(step_limits, state.steps[step].spend)
        reached = f"step '{step}': {step_reached}" if step_reached else None
    return f"budget: {reached}" if reached else None


def wall_clock(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
    """policy.budget's max_wall_seconds, checked whenever the run is touched (after what the touch
    decided, so a resume that raises the limit is not paused first).

    Enforce pauses the run (reason budget; open tasks may still be submitted, the next task is held);
    audit records the warning once. Tokens and cost only change with a submission, so they are checked
    where work is issued.
    """
    limits = run_limits(engine, state)
    if state.ended or engine.budget is None or limits is None or limits.max_wall_seconds is None:
        return []
    tx = Transaction(state, now)
    elapsed = (tx.now - parse_iso(state.started_at)).total_seconds()
    reached = over(BudgetLimits(max_wall_seconds=limits.max_wall_seconds), Spend(), elapsed)
    if reached is None:
        return []
    if engine.budget.mode == "audit":
        if not (state.budget_warning or "").startswith("budget: max_wall_seconds"):
            tx.emit(BudgetReached(seq=tx.seq, at=tx.at, detail=f"budget: {reached}"))
    elif state.status != "paused":
        tx.emit(RunPaused(seq=tx.seq, at=tx.at, reason="budget", detail=pause_detail(engine, state, reached)))
    return tx.events


def budget_reached(engine: Engine, state: RunState, step: Step, now: datetime) -> str | None:
    """An enforced budget's reached limit, as the pause's detail; None in audit mode or under it."""
    if engine.budget is None or engine.budget.mode != "enforce":
        return None
    reached = budget_text(engine, state, step.name, now)
    return None if reached is None else pause_detail(engine, state, reached.removeprefix("budget: "))


def pause_detail(engine: Engine, state: RunState, reached: str) -> str:
    """An enforced pause's detail: the limit reached and how to go on."""
    flag = "--budget-seconds" if reached.startswith("max_wall_seconds") else "--budget-tokens"
    return (
        f"budget: {reached}. No new task is issued; resume with a raised limit "
        f"(resume(run_id, budget={{...}}) or `loopengt resume {state.run_id} {flag} N`)"
    )
