"""The checks of how a spec's steps connect: names defined once, references to steps and agents that
exist, no dependency cycles, isolation and resolver steps that can work, a budget that fits."""

from __future__ import annotations

import re
from collections.abc import Iterator

from loopengt_core.engine.validation.problems import Problem, names_text
from loopengt_core.model.spec import LoopSpec, Step


def isolation_problems(spec: LoopSpec) -> Iterator[Problem]:
    """`isolation: worktree` needs git, and a join that merges the branch back into the run's line."""
    isolated = [(i, s) for i, s in enumerate(spec.steps) if spec.isolated(s)]
    if not isolated:
        return
    if spec.workspace == "none":
        where = "isolation" if spec.isolation == "worktree" else f"steps[{isolated[0][0]}].isolation"
        yield Problem(
            where,
            "isolation: worktree needs the run's files in git: remove `workspace: none` (use auto or git), "
            "or set isolation: none",
        )
    for i, step in isolated:
        if not any(d.step_name == step.name for s in spec.steps for d in s.dependencies):
            yield Problem(
                f"steps[{i}].isolation",
                f"step '{step.name}' works in its own worktree, but no step depends on it, so its work would "
                "never be merged: add a join step that lists it in dependencies, or set isolation: none",
            )
        if spec.joins(step):
            yield Problem(
                f"steps[{i}].isolation",
                f"step '{step.name}' joins worktree branches ({', '.join(spec.joins(step))}): it works in "
                "their merge, so it cannot have a worktree of its own; set isolation: none",
            )


def resolve_problems(spec: LoopSpec) -> Iterator[Problem]:
    """A join's `resolve` names a step that runs only on that join's conflicts: never on its own."""
    steps = {s.name: s for s in spec.steps}
    targets = {t for s in spec.steps for t in [*(s.next or []), *_route_targets(s), s.on_failure] if t}
    for i, step in enumerate(spec.steps):
        name, where = step.resolve, f"steps[{i}].resolve"
        if name is None:
            continue
        found = steps.get(name)
        if found is None:
            yield Problem(where, f"unknown step '{name}' ({names_text('steps', list(steps))})")
        elif name == step.name:
            yield Problem(where, f"step '{name}' cannot resolve its own conflicts: name another step")
        elif not spec.joins(step):
            yield Problem(
                where,
                f"step '{step.name}' merges no worktree branches, so it has no conflicts to resolve: list "
                "steps with isolation: worktree in its dependencies, or remove resolve",
            )
        elif spec.pattern not in ("parallel_fan_out", "custom"):
            yield Problem(where, f"resolve needs pattern parallel_fan_out or custom, not {spec.pattern}")
        elif (
            found.dependencies
            or spec.isolated(found)
            or any(d.step_name == name for s in spec.steps for d in s.dependencies)
            or name in targets
            or (spec.pattern == "custom" and spec.steps[0].name == name)
        ):
            yield Problem(
                where,
                f"step '{name}' resolves conflicts, so it runs only when the merge has some: it cannot be "
                "the first step, have dependencies or a worktree of its own, nor be another step's "
                "dependency, next, route or on_failure",
            )
        elif found.on_failure or found.next or found.routes:
            yield Problem(
                where,
                f"step '{name}' resolves conflicts, so when it ends the run goes back to its join "
                f"'{step.name}': it cannot have next, routes or on_failure of its own",
            )


def _route_targets(step: Step) -> list[str]:
    if step.routes is None:
        return []
    return [*step.routes.map.values(), *([step.routes.default] if step.routes.default else [])]


def budget_problems(spec: LoopSpec) -> Iterator[Problem]:
    """policy.budget.steps names steps, and only agent steps report usage."""
    budget = spec.policy.budget
    steps = {s.name: s for s in spec.steps}
    for name in budget.steps if budget is not None else {}:
        where = f"policy.budget.steps.{name}"
        if name not in steps:
            yield Problem(where, f"unknown step '{name}' ({names_text('steps', list(steps))})")
        elif steps[name].run is not None:
            yield Problem(where, f"step '{name}' is a command step: it reports no usage, so no limit applies")


def duplicate_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Steps, agents, gates or inputs defined more than once."""
    groups: list[tuple[str, str, list[str]]] = [
        ("agents", "agent", [a.name for a in spec.agents]),
        ("steps", "step", [s.name for s in spec.steps]),
        ("tools", "tool", [t.name for t in spec.tools]),
        ("policy.verification_gates", "gate", [g.name for g in spec.policy.verification_gates]),
        ("inputs", "input", [i.name for i in spec.inputs]),
    ]
    for where, kind, names in groups:
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in first:
                yield Problem(
                    f"{where}[{i}].name", f"duplicate {kind} name '{name}' (first at {where}[{first[name]}])"
                )
            else:
                first[name] = i
    for i, name in enumerate(s.name for s in spec.steps):
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}", name):
            yield Problem(f"steps[{i}].name", f"'{name}' is not a usable step name (letters, digits, _ . -)")


def reference_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Steps that name agents, steps, gates or routes that do not exist."""
    agents = [a.name for a in spec.agents]
    steps = [s.name for s in spec.steps]
    tools = [t.name for t in spec.tools]
    for i, step in enumerate(spec.steps):
        here = f"steps[{i}]"
        if (step.agent is None) == (step.run is None):
            yield Problem(
                here, "a step needs exactly one of 'agent' (a task for an agent) or 'run' (a command)"
            )
        if step.agent is not None and step.agent not in agents:
            yield Problem(f"{here}.agent", f"unknown agent '{step.agent}' ({names_text('agents', agents)})")
        if step.run is not None and not step.run:
            yield Problem(f"{here}.run", "empty command: give an argv list such as ['pytest', '-q']")
        for j, dep in enumerate(step.dependencies):
            if dep.step_name not in steps:
                yield Problem(
                    f"{here}.dependencies[{j}].step_name",
                    f"unknown step '{dep.step_name}' ({names_text('steps', steps)})",
                )
        targets = [("next", n) for n in step.next or []]
        if step.routes is not None:
            targets += [(f"routes.map.{k}", v) for k, v in step.routes.map.items()]
            if step.routes.default is not None:
                targets.append(("routes.default", step.routes.default))
        if step.on_failure is not None:
            targets.append(("on_failure", step.on_failure))
        if targets and spec.pattern != "custom":
            key = targets[0][0].split(".")[0]
            yield Problem(
                f"{here}.{key}", f"'{key}' applies only to pattern 'custom' (pattern is '{spec.pattern}')"
            )
        for key, target in targets:
            if target not in steps:
                yield Problem(f"{here}.{key}", f"unknown step '{target}' ({names_text('steps', steps)})")
    if tools:
        for i, agent in enumerate(spec.agents):
            for j, tool in enumerate(agent.tools):
                if tool not in tools:
                    yield Problem(
                        f"agents[{i}].tools[{j}]", f"unknown tool '{tool}' ({names_text('tools', tools)})"
                    )


def cycle_problems(spec: LoopSpec) -> Iterator[Problem]:
    """Dependency cycles among the steps."""
    index = {s.name: i for i, s in enumerate(spec.steps)}
    graph = {s.name: [d.step_name for d in s.dependencies if d.step_name in index] for s in spec.steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    seen_cycles: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> Iterator[Problem]:
        state[name] = 1
        path.append(name)
        for dep in graph[name]:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    yield Problem(
                        f"steps[{index[dep]}].dependencies",
                        f"dependency cycle: {' -> '.join(reversed(cycle))}",
                    )
            elif dep not in state:
                yield from visit(dep, path)
        path.pop()
        state[name] = 2

    for step in spec.steps:
        if step.name not in state:
            yield from visit(step.name, [])
