"""Judge gates in the engine: issuing the judge's task, checking what the judge submits, and turning its
score into a verdict on the judged output.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loopengt_core.engine import briefing, evaluation, judge
from loopengt_core.engine.reading import emit_verdict
from loopengt_core.engine.render import render
from loopengt_core.engine.transaction import (
    Transaction,
)
from loopengt_core.model.errors import Conflict, InvalidArgument
from loopengt_core.model.events import (
    TaskIssued,
    iso,
)
from loopengt_core.model.spec import Gate, JudgeRule
from loopengt_core.model.state import GateResult, RunState, TaskState

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def issue_judge(engine: Engine, tx: Transaction, judged: str, gate: Gate, rule: JudgeRule) -> None:
    """A judge gate's task: the judge role gets the output, the rubric and the threshold."""
    state = tx.state
    evaluation = state.evaluations[judged]
    step = engine.steps[evaluation.step]
    agent = engine.agents.get(rule.agent)
    preamble = []
    if agent is not None and agent.system_prompt:
        scope = {**state.context, "goal": engine.spec.goal, "step": step.name, "agent": rule.agent}
        preamble.append(render(agent.system_prompt, {**scope, "run_id": state.run_id}).strip())
    if engine.spec.goal:
        preamble.append(f"Goal: {engine.spec.goal}")
    timeout = briefing.judge_timeout(engine, step, rule.agent)
    task_input = judge.task_input(
        briefing.task_input_of(engine, state, step, {}),
        judged=judged,
        step=step.name,
        agent=step.agent,
        attempt=evaluation.attempt,
        output=evaluation.output,
        rule=rule,
    )
    tx.emit(
        TaskIssued(
            seq=tx.seq,
            at=tx.at,
            task_id=judge.task_id(judged, gate.name),
            step=step.name,
            agent=rule.agent,
            attempt=evaluation.attempt,
            instructions=judge.instructions(gate.name, step.name, judged, rule, preamble),
            input=task_input,
            output_schema=judge.OUTPUT_SCHEMA,
            feedback=None,
            expires_at=iso(tx.now + timedelta(seconds=timeout)) if timeout else None,
            judging=judged,
            judge_gate=gate.name,
        )
    )


def check_judge_submission(  # noqa: PLR0917 (the engine comes first, as self did)
    engine: Engine, state: RunState, task: TaskState, output: Any, outcome: str, submitted_by: str | None
) -> None:
    """Refuse (recording nothing) a judge answer from the judged output's submitter, or off schema."""
    judged = state.evaluations.get(task.judging or "")
    if judged is not None and submitted_by is not None and judged.submitted_by == submitted_by:
        raise Conflict(
            f"task {task.task_id} judges step {task.step}'s output ({judged.task_id}), which this "
            f"session submitted ({submitted_by}); another agent must judge it: the '{task.agent}' role, "
            "from another MCP session (headless: its own command, --agent "
            f"{task.agent}=CMD). Nothing was recorded",
            run_id=state.run_id,
        )
    if outcome == "success":
        problems = judge.output_problems(output)
        if problems:
            raise InvalidArgument(
                f"task {task.task_id} is a judge task: its output must be "
                '{"score": 0..1, "passed": true|false, "reasons": [text, ...]}, and '
                + "; ".join(problems)
                + ". Nothing was recorded: submit it again",
                run_id=state.run_id,
            )


def verdict(  # noqa: PLR0917 (the engine comes first, as self did)
    engine: Engine,
    tx: Transaction,
    task: TaskState,
    gate: Gate,
    result: GateResult,
    score: float | None = None,
) -> None:
    """A judge's verdict on `task.judging`: the gate passes (on to the next gate) or fails (retry)."""
    judged = task.judging or ""
    emit_verdict(tx, judged, task.step, result, gate.on_failure, score=score)
    if result.passed:
        evaluation.continue_after(engine, tx, judged)
        return
    text = "\n".join(f for f in (gate.feedback, result.feedback) if f)
    evaluation.fail_step(engine, tx, task.step, text, abort=gate.on_failure == "abort")
