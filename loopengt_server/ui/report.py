"""`loopengt report RUN`: a run as a Markdown document (for a pull request, an issue, an archive).

The same parts as the web view, read through the runs service: the run's status and spend, its loop
drawn as Mermaid (GitHub renders the block) with each step's status, the steps with their attempts,
every task with its feedback and gate results, the checkpoints and the timeline of events.
"""

from __future__ import annotations

import json
from typing import Any

from loopengt_core.model.budget import spend_text
from loopengt_core.service.runs import Runs
from loopengt_server.ui.fold import GateRecord, TaskFold, TaskRecord
from loopengt_server.ui.watch import marked_graph

DETAIL_CHARS = 2000


def _cell(value: Any) -> str:
    """Text for one table cell: one line, pipes escaped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return " ".join(text.split()).replace("|", "\\|")


def _block(value: Any, limit: int = DETAIL_CHARS) -> str:
    """A fenced block (fence longer than any backtick run inside), cut at `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters)"
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def _gate_line(gate: GateRecord) -> str:
    verdict = "waiting" if gate.passed is None else "passed" if gate.passed else "failed"
    parts = [f"- gate **{gate.gate}**: {verdict}"]
    if gate.score is not None:
        parts.append(f" (judge's score {gate.score:g})")
    if gate.exit_code is not None:
        parts.append(f" (exit {gate.exit_code}, {gate.duration_seconds or 0:g} s)")
    if gate.approval:
        parts.append(f"; {gate.approval}")
    if gate.feedback:
        parts.append(f"; {_cell(gate.feedback)}")
    line = "".join(parts)
    if gate.output:
        line += "\n\n" + _indent(_block(gate.output))
    return line


def _indent(text: str) -> str:
    return "\n".join(("  " + line) if line else line for line in text.splitlines())


def _task(task: TaskRecord) -> list[str]:
    who = f"agent {task.agent}" if task.agent else "command " + " ".join(task.command or [])
    out = [f"#### {task.task_id} ({who}, attempt {task.attempt}): {task.outcome or 'open'}", ""]
    if task.feedback:
        out += [f"Feedback given: {_cell(task.feedback)}", ""]
    if task.error:
        out += [f"Error: {_cell(task.error)}", ""]
    if task.output is not None:
        out += ["Output:", "", _block(task.output), ""]
    out += [_gate_line(g) for g in task.gates]
    if task.gates:
        out.append("")
    return out


def markdown_report(runs: Runs, run_id: str) -> str:
    """The report's text. Raises NotFound for an unknown run."""
    view = runs.get_run(run_id)
    spec = runs.spec_of(run_id)
    fold = TaskFold()
    lines = fold.add(runs.trace(run_id))
    spend = view.spend
    out = [
        f"# Run {view.run_id}: {view.status}",
        "",
        "| | |",
        "|---|---|",
        f"| loop | {_cell(view.loop)} ({spec.pattern}) |",
        f"| goal | {_cell(spec.goal) or '-'} |",
        f"| status | {view.status} |",
        f"| turn | {view.turn} |",
        f"| started | {view.started_at} |",
        f"| updated | {view.updated_at} |",
        f"| spend | {spend_text(spend, spend.submissions)} |",
    ]
    if view.parent_run_id:
        out.append(f"| forked from | {view.parent_run_id} |")
    if view.error:
        out.append(f"| reason | {_cell(view.error)} |")
    out += ["", "## Loop", "", "```mermaid", marked_graph(runs, view).rstrip("\n"), "```", ""]
    out += ["## Steps", "", "| step | status | attempts | spend |", "|---|---|---|---|"]
    out += [f"| {_cell(s.name)} | {s.status} | {s.attempts} | {spend_text(s.spend)} |" for s in view.steps]
    out += ["", "## Tasks", ""]
    for task in fold.tasks.values():
        out += _task(task)
    if not fold.tasks:
        out += ["No task was issued.", ""]
    gates = [(t, g) for t in fold.tasks.values() for g in t.gates]
    if gates:
        out += ["## Gate results", "", "| task | gate | result |", "|---|---|---|"]
        for task, gate in gates:
            verdict = "waiting" if gate.passed is None else "passed" if gate.passed else "failed"
            if gate.score is not None:
                verdict += f" (score {gate.score:g})"
            out.append(f"| {task.task_id} | {_cell(gate.gate)} | {verdict} |")
        out.append("")
    checkpoints = runs.list_checkpoints(run_id)
    if checkpoints:
        out += ["## Checkpoints", "", "| checkpoint | seq | label | taken |", "|---|---|---|---|"]
        out += [
            f"| {c.checkpoint_id} | {c.seq} | {_cell(c.label or '')} | {c.created_at} |" for c in checkpoints
        ]
        out.append("")
    out += ["## Timeline", "", "| seq | at | event | what |", "|---|---|---|---|"]
    out += [f"| {e.seq} | {e.at} | {e.type} | {_cell(e.text)} |" for e in lines]
    return "\n".join(out) + "\n"
