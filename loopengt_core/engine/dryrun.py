"""A dry run: drive a spec with a scripted agent through the pure engine, executing nothing.

It answers whether a spec's flow can reach `completed` (the `design` loop's gate): every agent task
gets an output built from its output_schema, shaped by the pattern (a supervisor visits each worker
once, then says done; an evaluator fails once, then passes; a route takes each of its values in
turn); command steps are not run and count as passing; verification gates (conditions, commands,
approvals) count as passing, since a made-up output says nothing about the real work. What is left
to fail is the flow itself: too few turns for the steps, a final output that misses the top-level
output_schema, a route or supervisor choice that goes nowhere. Deterministic: a fixed clock and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loopengt_core.engine import Engine
from loopengt_core.engine.gates import schema_errors
from loopengt_core.engine.patterns import threshold
from loopengt_core.model.spec import LoopSpec, Step
from loopengt_core.model.state import RunState, TaskState, project_run

MAX_ACTIONS = 1000  # submissions and commands: a flow that needs more is reported as not ending
PATH_SHOWN = 10  # steps shown from each end of a long path
MAX_EXAMPLE_VALUES = 2000  # values one example output may be built from (see _Maker)
_NOW = datetime(2000, 1, 1, tzinfo=UTC)  # never moves: no deadline or time limit falls due
_TEXT = "dry run"


@dataclass
class DryRun:
    """How a dry run ended: `completed`, else the status and the run's reason; the steps it took."""

    status: str
    error: str | None = None
    path: list[str] = field(default_factory=list)
    turns: int = 0

    @property
    def completed(self) -> bool:
        """Whether the simulated run completed."""
        return self.status == "completed"

    def text(self) -> str:
        """One paragraph for feedback: how it ended, why, and the steps taken (a long path elided)."""
        path = self.path
        if len(path) > 2 * PATH_SHOWN:
            path = [*path[:PATH_SHOWN], f"... {len(path) - 2 * PATH_SHOWN} more ...", *path[-PATH_SHOWN:]]
        taken = " -> ".join(path) or "none"
        if self.completed:
            ending = "completed"
        elif self.status == "running":
            ending = f"did not end: {self.error}"
        else:
            ending = f"ended {self.status}: {self.error or 'no reason given'}"
        return f"the dry run {ending} (after {self.turns} turns; steps taken: {taken})"


def example(schema: Any) -> Any:
    """A value that matches a JSON Schema where a simple one exists (first enum value, minimum, ...).

    An object gets its required properties only: optional ones (`handoff_to`, say) often steer the flow,
    and the dry run takes the path a plain answer takes. Of `anyOf`/`oneOf`, the first branch.
    """
    return examples(schema)[0]


def examples(schema: Any) -> list[Any]:
    """One value per `anyOf`/`oneOf` branch of `schema` (one value when it has none)."""
    return _Maker().values(schema)


class _Maker:
    """Builds example values within MAX_EXAMPLE_VALUES: nested arrays with a `minItems` at each level
    (a drafted schema is an agent's text) would otherwise multiply into more values than memory holds.
    Past the budget, arrays come out empty and objects bare; the schema check then says so."""

    def __init__(self) -> None:
        self.left = MAX_EXAMPLE_VALUES

    def values(self, schema: Any) -> list[Any]:
        self.left -= 1
        if not isinstance(schema, dict):
            return [_TEXT]
        for key in ("const", "default"):
            if key in schema:
                return [schema[key]]
        for key in ("enum", "examples"):
            if isinstance(schema.get(key), list) and schema[key]:
                return [schema[key][0]]
        base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf", "allOf")}
        for part in schema.get("allOf") or []:
            base = _merged(base, part)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            return [self.single(_merged(base, branch)) for branch in branches]
        return [self.single(base)]

    def one(self, schema: Any) -> Any:
        return self.values(schema)[0]

    def single(self, schema: dict[str, Any]) -> Any:
        if any(k in schema for k in ("const", "enum", "anyOf", "oneOf")):
            return self.one(schema)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema or "required" in schema else "string"
        if kind == "object":
            return self.object(schema)
        if kind == "array":
            return self.array(schema)
        return _SCALARS.get(kind, lambda s: _TEXT)(schema)

    def object(self, schema: dict[str, Any]) -> Any:
        found = schema.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        required = [k for k in schema.get("required") or [] if isinstance(k, str)]
        return {k: self.one(properties.get(k, {})) for k in dict.fromkeys(required) if self.left > 0}

    def array(self, schema: dict[str, Any]) -> Any:
        count = schema.get("minItems", 1)
        if schema.get("maxItems") == 0 or not isinstance(count, int):
            count = 0
        return [self.one(schema.get("items", {})) for _ in range(min(count, 10)) if self.left > 0]


def _merged(base: dict[str, Any], branch: Any) -> dict[str, Any]:
    if not isinstance(branch, dict):
        return base
    out = {**base, **branch}
    out["properties"] = {**(base.get("properties") or {}), **(branch.get("properties") or {})}
    out["required"] = [*(base.get("required") or []), *(branch.get("required") or [])]
    return out


def _string(schema: dict[str, Any]) -> Any:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    text = _TEXT.ljust(low if isinstance(low, int) and low < 1000 else 0, ".")
    return text[:high] if isinstance(high, int) else text


def _number(schema: dict[str, Any]) -> Any:
    integer = schema.get("type") == "integer"
    for key, offset in (("minimum", 0), ("exclusiveMinimum", 1)):
        if isinstance(schema.get(key), int | float):
            return schema[key] + offset
    value = 1
    for key, offset in (("maximum", 0), ("exclusiveMaximum", 1)):
        if isinstance(schema.get(key), int | float):
            value = min(value, schema[key] - offset)
    return int(value) if integer else value


_SCALARS: dict[str, Any] = {
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": lambda s: True,
    "null": lambda s: None,
}


class _ScriptedAgent:
    """Outputs for a dry run's tasks: from the schema, shaped by the pattern, varied by the visit."""

    def __init__(self, spec: LoopSpec, engine: Engine) -> None:
        self.spec = spec
        self.engine = engine
        self.visits: dict[str, int] = {}

    def output(self, task: TaskState) -> Any:
        step = self.engine.steps[task.step]
        visit = self.visits[step.name] = self.visits.get(step.name, 0) + (task.attempt == 1)
        schema = self.engine.output_schema(step)
        made = [self._steered(step, visit, value) for value in examples(schema or {"type": "object"})]
        fitting = [value for value in made if schema is None or not schema_errors(schema, value)]
        return (fitting or made)[0]

    def _steered(self, step: Step, visit: int, made: Any) -> Any:
        """`made` with the fields the pattern reads set for this visit."""
        first = self.spec.steps[0].name
        out: dict[str, Any] = dict(made) if isinstance(made, dict) else {}
        if self.spec.pattern == "supervisor_worker" and step.name == first:
            workers = [s.name for s in self.spec.steps[1:]]
            out.pop("next_step", None)
            out.pop("done", None)
            if visit <= len(workers):
                out["next_step"] = workers[visit - 1]
            else:
                out["done"] = True
        elif self.spec.pattern == "evaluator_optimizer" and step.name == first:
            passed = visit > 1
            out |= {"passed": passed, "score": max(threshold(self.spec), 1.0) if passed else 0.0}
        elif self.spec.pattern == "custom" and step.routes is not None:
            out[step.routes.field] = _route_value(step, visit)
        else:
            return made
        return out


def _route_value(step: Step, visit: int) -> Any:
    """The visit-th of the route's values (its map's keys, then a value only `default` takes)."""
    assert step.routes is not None
    keys = list(step.routes.map) + ([None] if step.routes.default is not None else [])
    key = keys[min(visit, len(keys)) - 1] if keys else None
    if key is None:
        return f"{_TEXT}: none of {', '.join(step.routes.map) or 'the mapped values'}"
    return {"true": True, "false": False}.get(key, key)


def _without_checks(spec: LoopSpec) -> LoopSpec:
    """The spec whose gates, budget and stuck checks are gone: they judge real work, not the flow."""
    policy = spec.policy.model_copy(update={"verification_gates": [], "budget": None, "stuck": None})
    steps = [s.model_copy(update={"verification_gates": []}) for s in spec.steps]
    return spec.model_copy(update={"policy": policy, "steps": steps})


def dry_run(spec: LoopSpec, inputs: dict[str, Any] | None = None) -> DryRun:
    """Drive `spec` to its end with the scripted agent; `inputs` as start_run's (required ones made up)."""
    engine = Engine(_without_checks(spec))
    context = {**spec.context, **{d.name: d.default for d in spec.inputs if d.default is not None}}
    context |= {d.name: _TEXT for d in spec.inputs if d.required and d.name not in context}
    context |= inputs or {}
    events = engine.start(run_id="dry-run", now=_NOW, seed=0, context=context, spec_hash="dry-run")
    state = project_run(events)
    agent = _ScriptedAgent(spec, engine)
    path: list[str] = []
    for _ in range(MAX_ACTIONS):
        if state.ended or state.status != "running":
            break
        state = _act(engine, agent, state, path)
    else:
        return DryRun("running", f"it ran {MAX_ACTIONS} tasks and commands without ending", path, state.turn)
    return DryRun(state.status, state.error, path, state.turn)


def _act(engine: Engine, agent: _ScriptedAgent, state: RunState, path: list[str]) -> RunState:
    """One move: finish a due command (as passing, never run), else answer the first open task.

    The engine applies each event it decides to `state` as it goes, so the state is advanced in place.
    """
    commands = state.due_commands()
    if commands:
        command = commands[0]
        path.append(f"{command.step} (command, not run)")
        engine.finish_command(
            state, command.command_id, exit_code=0, output="", duration_seconds=0.0, timed_out=False, now=_NOW
        )
        return state
    if not state.tasks:
        return state.model_copy(update={"status": "paused", "error": "no task is open and no command is due"})
    task = next(iter(state.tasks.values()))
    path.append(task.step)
    engine.submit(
        state, task.task_id, agent.output(task), outcome="success", error=None, digest="dry-run", now=_NOW
    )
    return state
