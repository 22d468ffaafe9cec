"""Judge gates: another agent role scores an output against a rubric (`judge: {agent, rubric, threshold}`).

Pure, like the rest of the engine's decisions: the fixed output schema of a judge task, the task's input
and instructions, and the verdict on the judge's answer. The engine issues the judge task once the
output's other gates (but approval) have passed, and folds the verdict into the run as a gate result:
the step passes when `score >= threshold` and `passed` is true (the judge may veto a high score); on a
fail the judge's reasons are the retry's feedback.
"""

from __future__ import annotations

from typing import Any

from loopengt_core.engine.gates import schema_errors
from loopengt_core.model.spec import JudgeRule
from loopengt_core.model.state import GateResult

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "How well the output meets the rubric, 0 to 1.",
        },
        "passed": {
            "type": "boolean",
            "description": "Whether the output is good enough, in the judge's view.",
        },
        "reasons": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Why: what is missing or wrong (the agent's feedback when it fails).",
        },
    },
    "required": ["score", "passed", "reasons"],
}


def task_id(judged: str, gate: str) -> str:
    """A judge task's id: `<judged task id>:<gate>`, like a command gate's command id."""
    return f"{judged}:{gate}"


def task_input(
    base: dict[str, Any],
    *,
    judged: str,
    step: str,
    agent: str | None,
    attempt: int,
    output: Any,
    rule: JudgeRule,
) -> dict[str, Any]:
    """What a judge task carries: the run's base input, the output under judgement, the rubric, the threshold."""
    return {
        **base,
        "judging": {"task_id": judged, "step": step, "agent": agent, "attempt": attempt},
        "output": output,
        "rubric": rule.rubric,
        "threshold": rule.threshold,
    }


def instructions(gate: str, step: str, judged: str, rule: JudgeRule, preamble: list[str]) -> str:
    """The judge's task text (its role's system prompt and the goal come first, in `preamble`)."""
    return "\n\n".join(
        [
            *preamble,
            f"Judge gate '{gate}': judge the output of step '{step}' (task {judged}), in input.output, "
            f"against this rubric:\n{rule.rubric.strip()}",
            f'Submit {{"score": 0..1, "passed": true|false, "reasons": ["..."]}}. The step passes when score '
            f">= {rule.threshold:g} and passed is true; otherwise your reasons are the agent's feedback. You "
            "cannot judge an output you submitted yourself.",
        ]
    )


def output_problems(output: Any) -> list[str]:
    """Why a judge's output does not match OUTPUT_SCHEMA (empty when it does)."""
    return schema_errors(OUTPUT_SCHEMA, output)


def verdict(gate: str, judge_agent: str, rule: JudgeRule, output: dict[str, Any]) -> GateResult:
    """The gate's result from a judge output that matches OUTPUT_SCHEMA."""
    score, passed = float(output["score"]), bool(output["passed"])
    reasons = [str(r).strip() for r in output["reasons"] if str(r).strip()]
    ok = score >= rule.threshold and passed
    head = (
        f"judge '{judge_agent}' (gate '{gate}') scored {score:g} (threshold {rule.threshold:g}), "
        f"passed: {'true' if passed else 'false'}"
    )
    if not ok and score >= rule.threshold:
        head += " (the judge did not pass it)"
    text = head + ("" if not reasons else ":\n" + "\n".join(f"- {r}" for r in reasons))
    return GateResult(name=gate, passed=ok, feedback=text)


def unjudged(gate: str, judge_agent: str, why: str) -> GateResult:
    """A failed gate: the judge reported failure or its task expired."""
    return GateResult(name=gate, passed=False, feedback=f"judge '{judge_agent}' (gate '{gate}') {why}")
