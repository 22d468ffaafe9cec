"""Prompt placeholders: `{name}` or `{dotted.path}` filled from a namespace, never through str.format.

str.format would allow attribute access (`{x.__class__}`); here a placeholder is only a path of keys.
Braces that do not hold a path (JSON examples in prompts) are left as written; `{{` and `}}` escape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)\}")

BUILTIN_VARIABLES: dict[str, str] = {
    "goal": "the spec's goal",
    "feedback": "why the previous attempt failed (gate output, reviewer comments), or empty",
    "attempt": "the attempt number within this visit of the step (1, 2, ...)",
    "turn": "accepted submissions so far in the run",
    "step": "this step's name",
    "agent": "this step's agent",
    "run_id": "the run's id",
    "input": "the task's structured input, as JSON",
    "context": "the run's context (spec context merged with start inputs), as JSON",
    "steps": "steps.<name>.output: the latest accepted output of a step (also steps.<name>.output.<field>)",
    "evaluation": "evaluator_optimizer: the evaluator's last output",
    "last_worker": "supervisor_worker: the last worker's {step, agent, output}",
    "handoff": "handoff: the previous step's {from_step, agent, output}",
}


def placeholders(template: str) -> list[str]:
    """Every placeholder path in `template`, in order."""
    return [m.group(1) for m in PLACEHOLDER.finditer(template) if m.group(1)]


def _lookup(namespace: Mapping[str, Any], path: str) -> Any:
    value: Any = namespace
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def render(template: str, namespace: Mapping[str, Any]) -> str:
    """Fill placeholders; an unknown path renders empty (validation reports unfillable ones up front)."""

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return _text(_lookup(namespace, match.group(1)))

    return PLACEHOLDER.sub(fill, template)
