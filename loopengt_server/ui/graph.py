"""A loop spec as a Mermaid flowchart: `loopengt graph` prints it, the web view draws it with step statuses.

Each pattern's transitions (see `loopengt_core.engine.patterns`) become edges: the sequence, fan-out from the
start and joins on dependencies, a supervisor's choice of worker and the way back, an evaluator's
verdict, custom `next` (a list fans out), `routes` (labelled with the value that picks them) and
`on_failure`; a step that may retry has a dotted edge to itself. Node ids are `s0`, `s1`, ... in spec
order, so any step name is safe; names are shown in quoted labels.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from loopengt_core.engine.patterns import order
from loopengt_core.model.spec import LoopSpec, RetryPolicy, Step

START, END = "start", "finish"

# One class per step status, and `current` for a step with an open task (drawn thicker).
STATUS_STYLES = {
    "pending": "fill:#f4f4f5,stroke:#a1a1aa,color:#27272a",
    "running": "fill:#dbeafe,stroke:#2563eb,color:#1e3a8a",
    "waiting_approval": "fill:#fef3c7,stroke:#d97706,color:#78350f",
    "completed": "fill:#dcfce7,stroke:#16a34a,color:#14532d",
    "failed": "fill:#fee2e2,stroke:#dc2626,color:#7f1d1d",
    "skipped": "fill:#f4f4f5,stroke:#d4d4d8,color:#71717a,stroke-dasharray:4 3",
}
CURRENT_STYLE = "stroke-width:4px"


def _text(value: str) -> str:
    """Text safe inside a Mermaid quoted label or edge label (quotes and markup as entity codes)."""
    out = value.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    out = out.replace("|", "#124;").replace("\n", " ")
    return " ".join(out.split())


class _Graph:
    def __init__(self, spec: LoopSpec) -> None:
        self.spec = spec
        self.ids = {step.name: f"s{i}" for i, step in enumerate(spec.steps)}
        self.edges: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def edge(self, source: str, target: str, label: str | None = None, *, dotted: bool = False) -> None:
        a, b = self.ids.get(source, source), self.ids.get(target, target)
        if (a, b) in self.seen:
            return
        self.seen.add((a, b))
        arrow = "-.->" if dotted else "-->"
        text = '|"' + _text(label) + '"|' if label else ""
        self.edges.append(f"    {a} {arrow}{text} {b}")


def _retry(spec: LoopSpec, step: Step) -> RetryPolicy:
    agent = next((a for a in spec.agents if a.name == step.agent), None)
    return agent.retry if agent is not None and agent.retry is not None else spec.policy.retry


def _label(spec: LoopSpec, step: Step) -> str:
    kind = f"agent {step.agent}" if step.agent else "command " + " ".join(step.run or [])[:40]
    lines = [step.name, kind]
    if step.verification_gates:
        lines.append("gates: " + ", ".join(step.verification_gates))
    return "<br/>".join(_text(line) for line in lines)


def _sequence(g: _Graph, spec: LoopSpec) -> None:
    names = order(spec)
    g.edge(START, names[0])
    for a, b in itertools.pairwise(names):
        g.edge(a, b)
    g.edge(names[-1], END)
    if spec.pattern == "handoff":
        for a in names:
            for b in names:
                if a != b:
                    g.edge(a, b, "handoff_to", dotted=True)


def _fan_out(g: _Graph, spec: LoopSpec) -> None:
    needed = {d.step_name for s in spec.steps for d in s.dependencies}
    for step in spec.steps:
        if not step.dependencies:
            g.edge(START, step.name)
        for dep in step.dependencies:
            g.edge(dep.step_name, step.name, "join" if len(step.dependencies) > 1 else None)
        if step.name not in needed:
            g.edge(step.name, END)


def _supervisor(g: _Graph, spec: LoopSpec) -> None:
    lead = spec.steps[0].name
    g.edge(START, lead)
    for worker in spec.steps[1:]:
        g.edge(lead, worker.name, f"next_step: {worker.name}")
        g.edge(worker.name, lead)
    g.edge(lead, END, "done")


def _evaluator(g: _Graph, spec: LoopSpec) -> None:
    evaluator, optimizer = spec.steps[0].name, spec.steps[1].name
    g.edge(START, evaluator)
    g.edge(evaluator, END, "passed")
    g.edge(evaluator, optimizer, "below threshold")
    g.edge(optimizer, evaluator)


def _custom(g: _Graph, spec: LoopSpec) -> None:
    g.edge(START, spec.steps[0].name)
    for step in spec.steps:
        targets = 0
        if step.routes is not None:
            for value, target in step.routes.map.items():
                g.edge(step.name, target, f"{step.routes.field} = {value}")
                targets += 1
            if step.routes.default is not None:
                g.edge(step.name, step.routes.default, "default")
                targets += 1
        for target in step.next or []:
            g.edge(step.name, target, "fan-out" if len(step.next or []) > 1 else None)
            targets += 1
        for dep in step.dependencies:
            g.edge(dep.step_name, step.name, "join", dotted=True)
        if step.on_failure is not None:
            g.edge(step.name, step.on_failure, "on failure", dotted=True)
        if not targets:
            g.edge(step.name, END)


_PATTERNS = {
    "sequential": _sequence,
    "handoff": _sequence,
    "parallel_fan_out": _fan_out,
    "supervisor_worker": _supervisor,
    "evaluator_optimizer": _evaluator,
    "custom": _custom,
}


def mermaid(
    spec: LoopSpec, statuses: Mapping[str, str] | None = None, current: frozenset[str] = frozenset()
) -> str:
    """The Mermaid flowchart of `spec`. With `statuses` (step -> StepStatus) each step is styled by its
    status and the `current` steps (open tasks) drawn thicker: the same graph, marked."""
    g = _Graph(spec)
    lines = ["flowchart TD", f"    {START}((start))", f"    {END}((end))"]
    lines += [f'    {g.ids[s.name]}["{_label(spec, s)}"]' for s in spec.steps]
    _PATTERNS.get(spec.pattern, _custom)(g, spec)
    for step in spec.steps:
        retry = _retry(spec, step)
        if step.allow_retry and retry.max_retries > 0:
            g.edge(step.name, step.name, f"retry ≤{retry.max_retries}", dotted=True)
    lines += g.edges
    if statuses:
        lines += [f"    classDef {name} {style}" for name, style in STATUS_STYLES.items()]
        lines.append(f"    classDef current {CURRENT_STYLE}")
        for step in spec.steps:
            status = statuses.get(step.name)
            if status in STATUS_STYLES:
                lines.append(f"    class {g.ids[step.name]} {status}")
        lines += [f"    class {g.ids[name]} current" for name in sorted(current) if name in g.ids]
    return "\n".join(lines) + "\n"


def node_ids(spec: LoopSpec) -> dict[str, str]:
    """Step name -> its node id in the drawing (the page finds a step's node by it)."""
    return {step.name: f"s{i}" for i, step in enumerate(spec.steps)}
