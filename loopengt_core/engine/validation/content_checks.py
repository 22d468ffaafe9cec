"""The checks of what a spec's steps and gates hold: gate settings, conditions, output schemas, template
placeholders, stop conditions and each pattern's own rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from loopengt_core.engine.gates import condition_problems
from loopengt_core.engine.render import BUILTIN_VARIABLES, placeholders
from loopengt_core.engine.validation.problems import Problem, names_text, short, suggest
from loopengt_core.model import gatetypes
from loopengt_core.model.expressions import STOP_NAMES
from loopengt_core.model.spec import LoopSpec


def gate_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Problems in the verification gates' settings: names, conditions, types, approvals, judges."""
    gates = [g.name for g in spec.policy.verification_gates]
    for i, gate in enumerate(spec.policy.verification_gates):
        here = f"policy.verification_gates[{i}]"
        pure = list(gatetypes.configured(gate))
        kinds = [t.key for t, _ in pure] + [
            k
            for k, on in (
                ("command", gate.command is not None),
                ("approval", gate.approval),
                ("judge", gate.judge is not None),
            )
            if on
        ]
        if len(kinds) != 1:
            found = f" (has {', '.join(kinds)})" if kinds else ""
            yield Problem(here, f"a gate needs exactly one of {_gate_kinds()}{found}")
        for gate_type, config in pure:
            for message in gate_type.problems(config):
                yield Problem(f"{here}.{gate_type.key}", message)
        if gate.command is not None and not gate.command:
            yield Problem(f"{here}.command", "empty command: give an argv list such as ['pytest', '-q']")
    agents = [a.name for a in spec.agents]
    judges = {g.name: (i, g.judge) for i, g in enumerate(spec.policy.verification_gates) if g.judge}
    for i, judge in judges.values():
        if judge.agent not in agents:
            yield Problem(
                f"policy.verification_gates[{i}].judge.agent",
                f"unknown agent '{judge.agent}' ({names_text('agents', agents)})",
            )
    for i, step in enumerate(spec.steps):
        for j, name in enumerate(step.verification_gates):
            if name not in gates:
                yield Problem(
                    f"steps[{i}].verification_gates[{j}]",
                    f"unknown gate '{name}' ({names_text('gates in policy.verification_gates', gates)})",
                )
            elif name in judges and step.agent is not None and judges[name][1].agent == step.agent:
                others = [a for a in agents if a != step.agent]
                yield Problem(
                    f"policy.verification_gates[{judges[name][0]}].judge.agent",
                    f"gate '{name}' judges step '{step.name}', whose agent is '{step.agent}': the agent under "
                    f"judgement cannot judge itself; name another role ({names_text('other agents', others)})",
                )


def _gate_kinds() -> str:
    """'condition', 'command', 'approval: true', 'loop_spec' or 'judge', then the gate types from plugins."""
    builtin = ["'condition'", "'command'", "'approval: true'", "'loop_spec'", "'judge'"]
    names = builtin + [f"'{k}'" for k in gatetypes.registered_keys() if k not in gatetypes.BUILTIN_KEYS]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _condition(where: str, expression: Any, names: tuple[str, ...]) -> Iterator[Problem]:
    """A condition must be evaluable: JMESPath or a sandboxed Python-style expression (expressions.py)."""
    if not isinstance(expression, str) or not expression.strip():
        yield Problem(where, f"expected a JMESPath expression (text), got {short(expression)}")
        return
    for message in condition_problems(expression, names):
        yield Problem(where, message)


def schema_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Output schemas that are not valid JSON Schema."""
    found: list[tuple[str, Any]] = []
    for i, step in enumerate(spec.steps):
        found.append((f"steps[{i}].output_schema", step.output_schema))
    for i, agent in enumerate(spec.agents):
        found += [
            (f"agents[{i}].output_schema", agent.output_schema),
            (f"agents[{i}].input_schema", agent.input_schema),
        ]
    for i, tool in enumerate(spec.tools):
        found.append((f"tools[{i}].schema_def", tool.schema_def))
    if spec.output_schema is not None:
        found.append(("output_schema.schema_def", spec.output_schema.schema_def))
    if not any(schema is not None for _, schema in found):
        return
    import jsonschema  # ~50 ms to import: only for a spec that has a schema to check

    for where, schema in found:
        if schema is None:
            continue
        # validator_for looks `$schema` up in a dict: a list would raise TypeError, a number AttributeError.
        # Any other non-text value is checked against the latest draft, which reports it as not a string.
        text_meta = isinstance(schema.get("$schema", ""), str)
        cls = (
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            if text_meta
            else jsonschema.Draft202012Validator
        )
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            at = ".".join(str(p) for p in exc.path)
            yield Problem(where, f"not a valid JSON Schema: {exc.message}" + (f" (at {at})" if at else ""))


def placeholder_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Template placeholders that name no built-in variable, context key or input."""
    known = set(BUILTIN_VARIABLES) | set(spec.context) | {i.name for i in spec.inputs}
    steps = [s.name for s in spec.steps]
    texts = [(f"steps[{i}].prompt_template", s.prompt_template) for i, s in enumerate(spec.steps)]
    texts += [(f"agents[{i}].system_prompt", a.system_prompt) for i, a in enumerate(spec.agents)]
    for where, text in texts:
        for path in placeholders(text or ""):
            head, _, rest = path.partition(".")
            if head not in known:
                hint = suggest(head, sorted(known))
                yield Problem(
                    where,
                    f"placeholder {{{path}}} cannot be filled ({hint}built-ins: {', '.join(BUILTIN_VARIABLES)}; "
                    f"context keys: {', '.join(spec.context) or 'none'}; inputs: "
                    f"{', '.join(i.name for i in spec.inputs) or 'none'})",
                )
            elif head == "steps" and head not in spec.context:
                name = rest.split(".")[0]
                if not rest or name not in steps:
                    yield Problem(
                        where,
                        f"placeholder {{{path}}}: use steps.<name>.output with a step name ({names_text('steps', steps)})",
                    )


def stop_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Stop conditions whose expression or kind cannot work."""
    for i, cond in enumerate(spec.stop_conditions):
        where = f"stop_conditions[{i}].value"
        value = cond.value
        if cond.condition_type in ("goal_met", "custom"):
            if cond.expression is not None and value is not None:
                yield Problem(
                    f"stop_conditions[{i}]",
                    f"{cond.condition_type}: give the expression once, in 'value' or in 'expression'",
                )
            elif cond.expression is not None:
                yield from _condition(f"stop_conditions[{i}].expression", cond.expression, STOP_NAMES)
            else:
                yield from _condition(where, value, STOP_NAMES)
        elif cond.expression is not None:
            yield Problem(
                f"stop_conditions[{i}].expression",
                f"only goal_met and custom take an expression (this is {cond.condition_type})",
            )
        elif cond.condition_type == "quality_threshold":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                yield Problem(where, f"quality_threshold needs a number from 0 to 1, got {short(value)}")
        elif cond.condition_type == "max_turns":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                yield Problem(where, f"max_turns needs a whole number of at least 1, got {short(value)}")
        elif cond.condition_type == "timeout" and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            yield Problem(where, f"timeout needs a number of seconds above 0, got {short(value)}")


def pattern_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Each pattern's own rules about the steps it needs."""
    steps = spec.steps
    agent_steps = [s for s in steps if s.agent is not None]
    if spec.pattern == "evaluator_optimizer":
        if len(steps) != 2 or len(agent_steps) != 2:
            yield Problem(
                "steps",
                "evaluator_optimizer needs exactly two agent steps: steps[0] evaluates, steps[1] optimizes "
                f"(found {len(agent_steps)} agent steps of {len(steps)})",
            )
    elif spec.pattern == "supervisor_worker":
        if steps[0].agent is None:
            yield Problem(
                "steps[0]", "supervisor_worker: steps[0] is the supervisor and must be an agent step"
            )
        if len(steps) < 2:
            yield Problem(
                "steps", "supervisor_worker needs workers: steps after steps[0] that the supervisor picks"
            )
    elif spec.pattern == "custom" and steps[0].dependencies:
        yield Problem(
            "steps[0].dependencies", "custom: the run starts at steps[0], which cannot wait on others"
        )
