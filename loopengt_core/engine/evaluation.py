"""What the engine decides about a submitted output: evaluate its gates, continue or accept, complete
the step or fail it (retry, stuck detection, abort), and finish the run when nothing is left.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loopengt_core.engine import briefing, commands, issuing, judging, patterns
from loopengt_core.engine.gates import schema_gate
from loopengt_core.engine.reading import emit_verdict
from loopengt_core.engine.transaction import (
    DEFAULT_COMMAND_TIMEOUT_SECONDS,
    Transaction,
    backoff_delay,
)
from loopengt_core.model import gatetypes
from loopengt_core.model.events import (
    ApprovalRequested,
    CommandRequested,
    GateFailed,
    RetryScheduled,
    RunCompleted,
    RunFailed,
    RunPaused,
    StepCompleted,
    StepFailed,
    iso,
)
from loopengt_core.model.expressions import STOP_NAMES, ConditionFailed, ExpressionError, compile_condition
from loopengt_core.model.gatetypes import GateContext
from loopengt_core.model.spec import OnFailure, Step
from loopengt_core.model.state import GateResult, RunState
from loopengt_core.model.stuck import Compared, diagnose, normalise

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def evaluate(engine: Engine, tx: Transaction, task_id: str) -> None:
    """Pure checks of an output: its schema, the pattern's needs, condition gates. Then the rest."""
    evaluation = tx.state.evaluations[task_id]
    step = engine.steps[evaluation.step]
    results: list[tuple[GateResult, OnFailure]] = []
    schema = briefing.output_schema(engine, step)
    if schema is not None and step.run is None:
        results.append((schema_gate("output_schema", schema, evaluation.output), "retry"))
    pattern_check = patterns.check_output(engine.spec, step, evaluation.output)
    if pattern_check is not None:
        results.append((pattern_check, "retry"))
    scope = briefing.gate_scope(engine, tx.state, evaluation.output, evaluation.attempt)
    for gate in briefing.step_gates(engine, step):
        context = GateContext(gate=gate.name, feedback=gate.feedback, scope=scope)
        for gate_type, config in gatetypes.configured(gate):
            verdict = gatetypes.judge(gate_type, config, evaluation.output, context)
            results.append((verdict, gate.on_failure))
    for result, on_failure in results:
        emit_verdict(tx, task_id, step.name, result, on_failure)
    failed = [(r, f) for r, f in results if not r.passed]
    if failed:
        feedback = "\n".join(r.feedback or f"gate '{r.name}' failed" for r, _ in failed)
        fail_step(engine, tx, step.name, feedback, abort=any(f == "abort" for _, f in failed))
        return
    continue_after(engine, tx, task_id)


def continue_after(engine: Engine, tx: Transaction, task_id: str) -> None:
    """The next unchecked command gate, then approval gates, then acceptance."""
    evaluation = tx.state.evaluations[task_id]
    step = engine.steps[evaluation.step]
    checked = {r.name for r in evaluation.results}
    gates = briefing.step_gates(engine, step)  # once: three passes over it below
    for gate in gates:
        if gate.command is not None and gate.name not in checked:
            tx.emit(
                CommandRequested(
                    seq=tx.seq,
                    at=tx.at,
                    command_id=f"{task_id}:{gate.name}",
                    kind="gate",
                    step=step.name,
                    task_id=task_id,
                    gate=gate.name,
                    argv=gate.command,
                    attempt=evaluation.attempt,
                    timeout_seconds=gate.timeout_seconds or DEFAULT_COMMAND_TIMEOUT_SECONDS,
                    not_before=tx.at,
                )
            )
            return
    for gate in gates:
        if gate.judge is not None and gate.name not in checked:
            judging.issue_judge(engine, tx, task_id, gate, gate.judge)
            return
    for gate in gates:
        if gate.approval and gate.name not in checked:
            tx.emit(
                ApprovalRequested(
                    seq=tx.seq,
                    at=tx.at,
                    task_id=task_id,
                    step=step.name,
                    gate=gate.name,
                    prompt=gate.prompt,
                )
            )
            return
    accept(engine, tx, task_id)


def accept(engine: Engine, tx: Transaction, task_id: str) -> None:
    """Complete the evaluated step and move on: a join's resolve, a stop condition, or the pattern's next steps."""
    state = tx.state
    evaluation = state.evaluations[task_id]
    step, output = engine.steps[evaluation.step], evaluation.output
    recorded = evaluation.output_seq()
    join = state.resolving.get(step.name)
    tx.emit(
        StepCompleted(seq=tx.seq, at=tx.at, step=step.name, task_id=task_id, output_seq=recorded)
        if recorded is not None  # the output is in the log once, at that seq
        else StepCompleted(seq=tx.seq, at=tx.at, step=step.name, output=output, task_id=task_id)
    )
    if join is not None:  # a resolve step's work is the join's start: its task follows, on those files
        visit = state.steps[join].visit_input
        resolved = {**visit["merge"], "resolved_by": {"step": step.name, "output": output}}
        issuing.issue(engine, tx, engine.steps[join], 1, None, {**visit, "merge": resolved})
        return
    stop = stop_reason(engine, state, output)
    if stop is not None:
        complete(engine, tx, step, task_id, output, stop)
        return
    following = patterns.after(engine.spec, state, step, output)
    if following.done:
        complete(engine, tx, step, task_id, output, following.reason)
        return
    for move in following.moves:
        issuing.start_step(engine, tx, move)
    if not state.active_steps() and state.approval is None and not state.failing:
        complete(engine, tx, step, task_id, output, "no step follows")


def complete(  # noqa: PLR0917 (the engine comes first, as self did)
    engine: Engine, tx: Transaction, step: Step, task_id: str, output: Any, reason: str
) -> None:
    """End the run completed, unless the final output misses the top-level output_schema."""
    if engine.spec.output_schema is not None:
        result = schema_gate(
            "final_output_schema",
            engine.spec.output_schema.json_schema(),
            output,
            what="top-level output_schema (the run's final output)",
        )
        if not result.passed:
            tx.emit(
                GateFailed(
                    seq=tx.seq,
                    at=tx.at,
                    task_id=task_id,
                    step=step.name,
                    gate=result.name,
                    feedback=result.feedback,
                    on_failure="retry",
                )
            )
            fail_step(engine, tx, step.name, result.feedback or "final output mismatch")
            return
    tx.emit(RunCompleted(seq=tx.seq, at=tx.at, final_output=output, reason=reason))


def stop_reason(engine: Engine, state: RunState, output: Any) -> str | None:
    """Why the run stops after this output (a goal_met/custom condition holds, the quality threshold is reached), or None."""
    if engine.goals:
        scope = {"output": output, "context": state.context, "steps": briefing.steps_scope(engine, state)}
        for kind, expression in engine.goals:
            try:
                met = compile_condition(expression, STOP_NAMES).holds(scope)
            except (ConditionFailed, ExpressionError):  # a missing key or a type error: not met
                met = False
            if met:
                return f"{kind}: {expression}"
    if engine.quality is not None and isinstance(output, dict):
        score = output.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool) and score >= engine.quality:
            return f"quality_threshold {engine.quality:g} reached (score {score})"
    return None


def fail_step(engine: Engine, tx: Transaction, name: str, feedback: str, *, abort: bool = False) -> None:
    """An attempt of `name` failed: retry within budget, else fail the step and maybe the run."""
    state = tx.state
    step, current = engine.steps[name], state.steps[name]
    retry = briefing.retry_policy(engine, step)
    if not abort and step.allow_retry and current.attempt <= retry.max_retries:
        attempt = current.attempt + 1
        if step.run is not None:
            delay = backoff_delay(retry, current.attempt, seed=state.seed, step=name)
            not_before = tx.now + timedelta(seconds=delay)
            tx.emit(
                RetryScheduled(
                    seq=tx.seq,
                    at=tx.at,
                    step=name,
                    attempt=attempt,
                    delay_seconds=delay,
                    not_before=iso(not_before),
                    feedback=feedback,
                )
            )
            commands.request_command_step(engine, tx, step, step.run, attempt, not_before)
        else:
            tx.emit(
                RetryScheduled(
                    seq=tx.seq,
                    at=tx.at,
                    step=name,
                    attempt=attempt,
                    delay_seconds=0.0,
                    not_before=tx.at,
                    feedback=feedback,
                    compared=compared(engine, state, name, feedback),
                )
            )
            # only while a retry is left to save (this branch) and a turn for it: else the run fails
            # as it always has
            stuck = diagnose(name, current.streak, engine.stuck) if engine.stuck is not None else None
            if stuck is not None and state.status != "paused" and state.turn < engine.max_turns:
                tx.emit(RunPaused(seq=tx.seq, at=tx.at, reason="stuck", detail=stuck))
            issuing.issue(engine, tx, step, attempt, feedback, current.visit_input)
        return
    first_line = feedback.strip().splitlines()[0] if feedback.strip() else "no detail"
    reason = (
        f"step '{name}' aborted: {first_line}"
        if abort
        else f"step '{name}' failed after {current.attempt} attempt{'s' if current.attempt != 1 else ''}: "
        f"{first_line}"
    )
    fallback = patterns.on_failure(engine.spec, step, feedback)
    others = state.active_steps() - {name}
    later = fallback is None and not engine.spec.policy.fail_fast and bool(others)
    tx.emit(StepFailed(seq=tx.seq, at=tx.at, step=name, reason=reason, fail_run_later=later))
    if fallback is not None:
        issuing.start_step(engine, tx, fallback)
    elif not later:
        tx.emit(RunFailed(seq=tx.seq, at=tx.at, reason=reason))


def compared(engine: Engine, state: RunState, name: str, feedback: str) -> Compared | None:
    """The failed attempt as stuck detection compares it (None with `policy.stuck: false`)."""
    if engine.stuck is None:
        return None
    answer = state.answers.get(f"{name}#{state.steps[name].issued}")
    return Compared(
        failure=normalise(feedback),
        digest=answer.digest if answer is not None else None,
        tree=state.workspace.tree if state.workspace is not None else None,
    )


def finish(engine: Engine, tx: Transaction) -> None:
    """End-of-transition rules: a failing run whose branches are done, and the turn budget."""
    state = tx._state
    if state is None or state.ended:
        return
    if state.failing and not state.active_steps() and state.approval is None:
        tx.emit(RunFailed(seq=tx.seq, at=tx.at, reason=state.failing))
    elif state.turn >= engine.max_turns and state.tasks:
        tx.emit(
            RunFailed(
                seq=tx.seq,
                at=tx.at,
                reason=f"max_turns {engine.max_turns} reached{before_passed(engine, state)}",
            )
        )


def before_passed(engine: Engine, state: RunState) -> str:
    """' before step(s) ... passed' for an end message: the steps still active or pending, or nothing."""
    waiting = sorted(state.active_steps()) or sorted(
        n for n, s in state.steps.items() if s.status == "pending"
    )
    if not waiting:
        return ""
    names = ", ".join(f"'{n}'" for n in waiting[:3])
    return f" before step{'s' if len(waiting) > 1 else ''} {names} passed"
