"""What an agent is told with a task: its input, its instructions (with the pattern's hint and the
budget line), the output schema, and the per-step settings (timeouts, retry policy, gates, scopes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopengt_core.engine import patterns
from loopengt_core.engine.render import render
from loopengt_core.model.spec import Gate, RetryPolicy, Step
from loopengt_core.model.state import RunState

if TYPE_CHECKING:
    from loopengt_core.engine.core import Engine


def task_input_of(engine: Engine, state: RunState, step: Step, extra: dict[str, Any]) -> dict[str, Any]:
    """A task's input: the goal, the run's context, the memory it reads, and the step's own `extra`."""
    task_input: dict[str, Any] = {"goal": engine.spec.goal, "context": state.context}
    if state.memory:
        task_input["memory"] = state.memory
    task_input.update(extra)
    return task_input


def instructions(
    engine: Engine,
    state: RunState,
    step: Step,
    *,
    attempt: int,
    feedback: str | None,
    task_input: dict[str, Any],
) -> str:
    """The task text: role, goal, the step's rendered prompt, feedback and what to return."""
    agent = engine.agents.get(step.agent or "")
    scope: dict[str, Any] = {
        **state.context,
        "goal": engine.spec.goal,
        "feedback": feedback or "",
        "attempt": attempt,
        "turn": state.turn,
        "step": step.name,
        "agent": step.agent,
        "run_id": state.run_id,
        "input": task_input,
        "context": state.context,
        "steps": steps_scope(engine, state),
        "evaluation": task_input.get("evaluation"),
        "last_worker": task_input.get("last_worker"),
        "handoff": task_input.get("handoff"),
    }
    parts: list[str] = []
    if agent is not None and agent.system_prompt:
        parts.append(render(agent.system_prompt, scope).strip())
    if engine.spec.goal:
        parts.append(f"Goal: {engine.spec.goal}")
    title = f"Step '{step.name}', attempt {attempt}" + (f": {step.description}" if step.description else "")
    body = (
        render(step.prompt_template, scope).strip()
        if step.prompt_template
        else "Do this step's part of the goal and submit what you produced as the output."
    )
    parts.append(title + ("\n" + body if body else ""))
    if feedback and "{feedback}" not in (step.prompt_template or ""):
        parts.append(f"Feedback on the previous attempt:\n{feedback}")
    hint = pattern_hint(engine, step, task_input)
    if hint:
        parts.append(hint)
    if output_schema(engine, step) is not None:
        parts.append("Submit your output as JSON matching the task's output_schema.")
    return "\n\n".join(parts)


def pattern_hint(engine: Engine, step: Step, task_input: dict[str, Any]) -> str:
    """The line the spec's pattern adds to a task's instructions, if any."""
    spec = engine.spec
    names = [s.name for s in spec.steps]
    if spec.pattern == "supervisor_worker":
        if step.name == names[0]:
            hint = (
                f'Return {{"next_step": "<worker>"}} to hand work to a worker ({", ".join(names[1:])}), '
                'or {"done": true} when the goal is met.'
            )
            return hint + (
                " The last worker's result is in input.last_worker." if "last_worker" in task_input else ""
            )
        return "The supervisor's assignment is in input.assignment." if "assignment" in task_input else ""
    if spec.pattern == "evaluator_optimizer":
        if step.name == names[0]:
            return (
                f'Return {{"score": 0..1, "passed": true|false, "comments": "..."}}; the loop ends when '
                f"score >= {patterns.threshold(spec):g} or passed is true."
            )
        return "The evaluation to act on is in input.evaluation."
    if spec.pattern == "handoff":
        return f'To choose who acts next, set "handoff_to" to a step ({", ".join(names)}).'
    if spec.pattern == "custom" and step.routes is not None:
        return f'Set "{step.routes.field}" in your output to one of: {", ".join(step.routes.map)}.'
    return ""


# --- spec lookups --------------------------------------------------------------------------


def output_schema(engine: Engine, step: Step) -> dict[str, Any] | None:
    """The JSON Schema a step's output must match: the step's own, else its agent's; None: any output."""
    if step.output_schema is not None:
        return step.output_schema
    agent = engine.agents.get(step.agent or "")
    return agent.output_schema if agent is not None else None


def judge_timeout(engine: Engine, step: Step, role: str) -> float | None:
    """A judge task's: its role's timeout_seconds, else the judged step's."""
    agent = engine.agents.get(role)
    return (agent.timeout_seconds if agent is not None else None) or step.timeout_seconds


def step_timeout(engine: Engine, step: Step) -> float | None:
    """Seconds after which a step's open task expires (the step's, else its agent's); None for a command step."""
    if step.run is not None:
        return None
    agent = engine.agents.get(step.agent or "")
    return step.timeout_seconds or (agent.timeout_seconds if agent is not None else None)


def retry_policy(engine: Engine, step: Step) -> RetryPolicy:
    """The retry policy of a step: its agent's, else the policy's."""
    agent = engine.agents.get(step.agent or "")
    return agent.retry if agent is not None and agent.retry is not None else engine.spec.policy.retry


def step_gates(engine: Engine, step: Step) -> list[Gate]:
    """The verification gates a step runs, by name."""
    return [engine.gates[name] for name in step.verification_gates]


def steps_scope(engine: Engine, state: RunState) -> dict[str, Any]:
    """Every step's output and status by name, as conditions and templates name them."""
    return {name: {"output": s.output, "status": s.status} for name, s in state.steps.items()}


def gate_scope(engine: Engine, state: RunState, output: Any, attempt: int) -> dict[str, Any]:
    """What a gate's condition may name: this output, the run's context, the steps and the attempt."""
    return {
        "output": output,
        "context": state.context,
        "steps": steps_scope(engine, state),
        "attempt": attempt,
    }
