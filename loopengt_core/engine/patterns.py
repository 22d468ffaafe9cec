"""How each pattern chooses what runs next. Pure functions of the spec, the state and an output.

Every named pattern is shorthand for explicit transitions; `custom` spells them out with `next`,
`routes` and `on_failure`. The engine asks three questions: what starts a run, is this output
usable for the pattern (a supervisor naming a real worker, a route that maps), and what follows it.
"""

from __future__ import annotations

import heapq
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

from loopengt_core.model.spec import LoopSpec, Step
from loopengt_core.model.state import GateResult, RunState

DEFAULT_QUALITY_THRESHOLD = 0.8


@dataclass(frozen=True)
class Move:
    """Start a visit of `step` with this input (merged into the task's input) and feedback."""

    step: str
    input: dict[str, Any] = field(default_factory=dict)
    feedback: str | None = None


@dataclass(frozen=True)
class Next:
    moves: list[Move] = field(default_factory=list)
    done: bool = False
    reason: str = ""


def order(spec: LoopSpec) -> list[str]:
    """Steps in dependency order, declaration order breaking ties (validation rejected cycles).

    Computed once per spec object and kept beside it: the engine asks on every transition, and a
    spec does not change once a run has started.
    """
    key = id(spec)
    found = _ORDERS.get(key)
    if found is None or found[0]() is not spec:
        found = _ORDERS[key] = (weakref.ref(spec, lambda _: _ORDERS.pop(key, None)), _order(spec))
    return found[1]


_ORDERS: dict[int, tuple[weakref.ref[LoopSpec], list[str]]] = {}


def _order(spec: LoopSpec) -> list[str]:
    """Kahn's algorithm with a heap of declaration indexes: O((steps + dependencies) log steps)."""
    index = {s.name: i for i, s in enumerate(spec.steps)}
    waiting = [0] * len(spec.steps)
    dependants: list[list[int]] = [[] for _ in spec.steps]
    for i, step in enumerate(spec.steps):
        for dep in {d.step_name for d in step.dependencies}:
            if dep in index and dep != step.name:
                waiting[i] += 1
                dependants[index[dep]].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    out: list[int] = []
    placed = [False] * len(spec.steps)
    while len(out) < len(spec.steps):
        if not ready:  # a cycle: unreachable for validated specs; keep declaration order, never loop forever
            ready = [next(i for i, done in enumerate(placed) if not done)]
        i = heapq.heappop(ready)
        if placed[i]:
            continue
        placed[i] = True
        out.append(i)
        for j in dependants[i]:
            waiting[j] -= 1
            if waiting[j] == 0 and not placed[j]:
                heapq.heappush(ready, j)
    return [spec.steps[i].name for i in out]


def threshold(spec: LoopSpec) -> float:
    """The score an evaluation must reach: the spec's quality_threshold stop condition, else the default."""
    value = spec.stop_value("quality_threshold")
    return float(value) if isinstance(value, int | float) else DEFAULT_QUALITY_THRESHOLD


def evaluation_passed(spec: LoopSpec, output: Any) -> bool:
    """Whether an evaluator's output passes: a `score` at the threshold or above, or `passed` / `approved`
    true."""
    if not isinstance(output, dict):
        return False
    score = output.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool) and score >= threshold(spec):
        return True
    return output.get("passed") is True or output.get("approved") is True


def evaluation_text(output: Any) -> str:
    """The evaluator's output as feedback for the optimizer."""
    if isinstance(output, dict):
        parts = []
        if "score" in output:
            parts.append(f"score {output['score']}")
        for key in ("comments", "feedback", "issues", "summary"):
            if output.get(key):
                value = output[key]
                parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        if parts:
            return "Evaluation: " + "; ".join(parts)
    return "Evaluation: " + (output if isinstance(output, str) else json.dumps(output, ensure_ascii=False))


def _ready(spec: LoopSpec, state: RunState) -> list[str]:
    done = {n for n, s in state.steps.items() if s.status == "completed"}
    resolvers = spec.resolvers()  # they run on a join's conflicts only
    return [
        s.name
        for s in spec.steps
        if state.steps[s.name].status == "pending"
        and s.name not in resolvers
        and {d.step_name for d in s.dependencies} <= done
    ]


def _dependency_outputs(spec: LoopSpec, state: RunState, step: Step) -> dict[str, Any]:
    return {d.step_name: state.steps[d.step_name].output for d in step.dependencies}


def fill(spec: LoopSpec, state: RunState) -> list[Move]:
    """parallel_fan_out: every ready step, up to max_concurrency in flight at once."""
    limit = spec.policy.max_concurrency
    if "allow_parallel" in spec.policy.model_fields_set and not spec.policy.allow_parallel:
        limit = 1
    if state.failing:
        return []
    free = limit - len(state.active_steps())
    moves = []
    for name in _ready(spec, state)[: max(free, 0)]:
        step = spec.step(name)
        moves.append(
            Move(name, {"dependencies": _dependency_outputs(spec, state, step)} if step.dependencies else {})
        )
    return moves


def initial(spec: LoopSpec, state: RunState) -> list[Move]:
    """The steps a new run starts with, as its pattern says."""
    if spec.pattern == "parallel_fan_out":
        return fill(spec, state)
    first = order(spec)[0] if spec.pattern in ("sequential", "handoff") else spec.steps[0].name
    return [Move(first)]


def _workers(spec: LoopSpec) -> list[str]:
    return [s.name for s in spec.steps[1:]]


def check_output(spec: LoopSpec, step: Step, output: Any) -> GateResult | None:
    """A pattern-level problem with an output (refused like a failed gate), or None."""
    if spec.pattern == "supervisor_worker" and step.name == spec.steps[0].name:
        workers = _workers(spec)
        if isinstance(output, dict) and output.get("done") is True:
            return None
        choice = output.get("next_step") if isinstance(output, dict) else None
        if choice in workers:
            return None
        got = f"got next_step {choice!r}" if choice is not None else "got neither"
        return GateResult(
            name="next_step",
            passed=False,
            feedback=f"the supervisor must return next_step naming a worker ({', '.join(workers)}) or done: true; {got}",
        )
    target = output.get("handoff_to") if spec.pattern == "handoff" and isinstance(output, dict) else None
    names = [s.name for s in spec.steps] if target is not None else []
    if target is not None and target not in names:
        return GateResult(
            name="handoff_to",
            passed=False,
            feedback=f"handoff_to {target!r} is not a step ({', '.join(names)})",
        )
    if spec.pattern == "custom" and step.routes is not None:
        value = output.get(step.routes.field) if isinstance(output, dict) else None
        key = _route_key(value)
        if key not in step.routes.map and step.routes.default is None:
            return GateResult(
                name="routes",
                passed=False,
                feedback=f"output.{step.routes.field} must be one of: {', '.join(step.routes.map)} (got {value!r})",
            )
    return None


def _route_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def after(spec: LoopSpec, state: RunState, step: Step, output: Any) -> Next:
    """What follows an accepted output of `step` (already recorded as completed in `state`)."""
    pattern = spec.pattern
    if pattern in ("sequential", "handoff"):
        sequence = order(spec)
        target = output.get("handoff_to") if pattern == "handoff" and isinstance(output, dict) else None
        if target is None:
            index = sequence.index(step.name) + 1
            if index >= len(sequence):
                return Next(done=True, reason="all steps completed")
            target = sequence[index]
        extra: dict[str, Any] = {"previous": {"step": step.name, "output": output}}
        if pattern == "handoff":
            extra = {"handoff": {"from_step": step.name, "agent": step.agent, "output": output}}
        return Next([Move(target, extra)])
    if pattern == "parallel_fan_out":
        resolvers = spec.resolvers()  # never run when no join had conflicts: not waited for
        if all(s.status == "completed" or n in resolvers for n, s in state.steps.items()):
            return Next(done=True, reason="all branches completed")
        return Next(fill(spec, state))
    if pattern == "supervisor_worker":
        supervisor = spec.steps[0]
        if step.name == supervisor.name:
            if isinstance(output, dict) and output.get("done") is True:
                return Next(done=True, reason="the supervisor declared the work done")
            return Next([Move(output["next_step"], {"assignment": output})])
        last = {"step": step.name, "agent": step.agent, "output": output}
        return Next([Move(supervisor.name, {"last_worker": last})])
    if pattern == "evaluator_optimizer":
        evaluator, optimizer = spec.steps[0], spec.steps[1]
        if step.name == evaluator.name:
            if evaluation_passed(spec, output):
                return Next(done=True, reason="the evaluation passed")
            return Next([Move(optimizer.name, {"evaluation": output}, evaluation_text(output))])
        return Next([Move(evaluator.name, {"revision": output})])
    return _custom_after(spec, state, step, output)


def _custom_after(spec: LoopSpec, state: RunState, step: Step, output: Any) -> Next:
    targets: list[str] = []
    if step.routes is not None:
        value = output.get(step.routes.field) if isinstance(output, dict) else None
        target = step.routes.map.get(_route_key(value), step.routes.default)
        if target is not None:
            targets.append(target)
    targets += step.next or []
    moves = []
    done = {n for n, s in state.steps.items() if s.status == "completed"}
    active = state.active_steps()
    for name in dict.fromkeys(targets):
        target_step = spec.step(name)
        deps = {d.step_name for d in target_step.dependencies}
        if name in active or not deps <= done:
            continue  # already running, or a join still waiting for other branches
        extra: dict[str, Any] = {"previous": {"step": step.name, "output": output}}
        if deps:
            extra["dependencies"] = _dependency_outputs(spec, state, target_step)
        moves.append(Move(name, extra))
    return Next(moves)


def on_failure(spec: LoopSpec, step: Step, reason: str) -> Move | None:
    """custom: where a step that ran out of attempts goes instead of failing the run."""
    if spec.pattern == "custom" and step.on_failure is not None:
        return Move(step.on_failure, {"failure": {"step": step.name, "reason": reason}}, reason)
    return None
