"""Gate evaluators. Pure: schema and condition checks run here; command results arrive as data.

`CONDITION` is the built-in `condition` gate type (see gatetypes.py for the protocol).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from loopengt_core.model.expressions import GATE_NAMES, ConditionFailed, ExpressionError, compile_condition
from loopengt_core.model.state import GateResult

if TYPE_CHECKING:
    import jsonschema

    from loopengt_core.model.gatetypes import GateContext

FEEDBACK_CHARS = 4000


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    import jsonschema  # ~50 ms to import: only once an output is checked against a schema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def schema_errors(schema: dict[str, Any], value: Any, limit: int = 5) -> list[str]:
    """Up to `limit` readable mismatches of `value` against a JSON Schema (empty when it matches)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors[:limit]:
        where = "output" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{where}: {err.message}")
    return out


def schema_gate(name: str, schema: dict[str, Any], value: Any, *, what: str = "output_schema") -> GateResult:
    """Check `value` against a JSON Schema: passed, or failed with every mismatch as the feedback."""
    problems = schema_errors(schema, value)
    if not problems:
        return GateResult(name=name, passed=True)
    return GateResult(
        name=name, passed=False, feedback=f"the output does not match the {what}: " + "; ".join(problems)
    )


def condition_gate(
    name: str,
    expression: str,
    scope: dict[str, Any],
    feedback: str | None,
    names: tuple[str, ...] = GATE_NAMES,
) -> GateResult:
    """A condition (JMESPath or Python-style, see `loopengt_core.model.expressions`) over `scope`; passes when truthy."""
    try:
        passed = compile_condition(expression, names).holds(scope)
    except (ConditionFailed, ExpressionError) as exc:
        return GateResult(name=name, passed=False, feedback=f"gate '{name}': `{expression}` failed: {exc}")
    if passed:
        return GateResult(name=name, passed=True)
    return GateResult(
        name=name, passed=False, feedback=feedback or f"gate '{name}' failed: `{expression}` is false"
    )


def condition_problems(expression: str, names: tuple[str, ...] = GATE_NAMES) -> Iterator[str]:
    """Why a condition cannot be evaluated (nothing when it compiles)."""
    if not expression.strip():
        yield f"expected a JMESPath expression (text), got {expression!r}"
        return
    try:
        compile_condition(expression, names)
    except ExpressionError as exc:
        yield str(exc)


class ConditionGate:
    """`condition: EXPR`: an expression over {output, context, steps, attempt} that must be truthy."""

    key = "condition"
    config = str

    def check(self, config: str, output: Any, context: GateContext) -> GateResult:
        """Evaluate the condition against the output and the run's scope."""
        return condition_gate(context.gate, config, context.scope, context.feedback)

    def problems(self, config: str) -> Iterator[str]:
        """What is wrong with the condition expression (for `loopengt validate`)."""
        return condition_problems(config)


CONDITION = ConditionGate()


def tail(text: str, limit: int = FEEDBACK_CHARS) -> str:
    """The end of `text`, at most `limit` characters (a failing command's last lines say why)."""
    return text if len(text) <= limit else "[...]" + text[-limit:]


def command_feedback(
    argv: list[str],
    exit_code: int | None,
    output: str,
    *,
    timed_out: bool,
    seconds: float,
    cancelled_by: str | None = None,
) -> str:
    """What an agent is told about a command that failed: the command, how it ended (exit code, timeout,
    cancelled) and the tail of its output."""
    shown = " ".join(argv)
    if cancelled_by is not None:
        head = f"`{shown}` was cancelled by {cancelled_by} after {seconds:.0f} s"
    elif timed_out:
        head = f"`{shown}` timed out after {seconds:.0f} s"
    else:
        head = f"`{shown}` exited with code {exit_code}"
    return f"{head}:\n{tail(output).rstrip()}" if output.strip() else head
