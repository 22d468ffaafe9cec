"""A run as an agent that lost its context needs it: read from the store without changing it, as short text.

The session hook (after a compaction, in a new session), the `drive_run` prompt and the run's `context`
resource all show `context_text`, so the picture is the same wherever an agent picks the run up. The stop
hook's `continuation` says what to do next in full.

Reading never takes the run's lock and never appends: `Runs.get_run` applies due deadlines (an expired
task, the time budget) as events. Here they are applied to this reader's own copy of the state, only to
see the run as it stands now; the log is left exactly as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from loopengt_core.engine import Engine
from loopengt_core.engine.validation import load_spec
from loopengt_core.engine.view import RunView, run_view
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import parse_iso
from loopengt_core.model.limits import call_wait_seconds
from loopengt_core.model.state import RunState, project_run
from loopengt_core.service.reading import RunReader
from loopengt_core.store import check_id

MAX_CONTEXT_CHARS = 2_000
MAX_TASK_CHARS = 4_000
MAX_REASON_CHARS = 12_000
ELLIPSIS = " [...]"


@dataclass(frozen=True)
class RunNow:
    """A run as it stands now (deadlines applied to this copy only) with its engine (budgets)."""

    state: RunState
    view: RunView
    engine: Engine

    @property
    def driveable(self) -> bool:
        """Running with turns left and open tasks for an agent, or commands checking a submission (the agent
        waits for their result): something an agent should go on with. Judge tasks alone are not: the
        session that submitted the judged output is refused them, so holding it on them would not help."""
        working = any(t.judging is None for t in self.state.tasks.values())
        return (
            self.state.status == "running"
            and (working or bool(self.state.due_commands()))
            and self.state.turn < self.engine.max_turns
        )


def read_run(reader: RunReader, run_id: str, now: datetime | None = None) -> RunNow:
    """Load a run read-only. Raises the store's NotFound / StoreCorrupt like any read."""
    loaded = reader.load(run_id)
    state = RunState.model_validate(loaded.snapshot) if loaded.snapshot is not None else None
    state = project_run(loaded.events, state)
    engine = Engine(load_spec(loaded.spec_text, source="stored spec"))
    engine.tick(state, now or datetime.now(UTC))  # applied to our copy; nothing is appended
    return RunNow(state, run_view(state), engine)


def live_runs(reader: RunReader, now: datetime | None = None) -> list[RunNow]:
    """Runs not ended (running, waiting for a person, paused), most recently updated first.

    A run that cannot be read is skipped: one corrupt run must not hide the others from a hook.
    """
    found = []
    for run_id in reader.list_runs():
        try:
            run = read_run(reader, run_id, now)
        except LoopengtError:
            continue
        if not run.state.ended:
            found.append(run)
    return sorted(found, key=lambda r: (r.state.updated_at, r.state.run_id), reverse=True)


def _cut(text: str, limit: int, *, flat: bool = True) -> str:
    """`text` in at most `limit` characters; `flat`: on one line."""
    text = " ".join(text.split()) if flat else text.strip()
    return text if len(text) <= limit else text[: max(0, limit - len(ELLIPSIS))].rstrip() + ELLIPSIS


def _budgets(run: RunNow) -> str:
    state, engine = run.state, run.engine
    spent = f"turn {state.turn} of at most {engine.max_turns}"
    if engine.time_limit_seconds is not None:
        elapsed = (datetime.now(UTC) - parse_iso(state.started_at)).total_seconds()
        spent += f", {elapsed:.0f} s of {engine.time_limit_seconds:g} s"
    return spent


def _last_gates(state: RunState) -> str | None:
    for task_id, answer in reversed(list(state.answers.items())):
        if answer.gate_results:
            parts = []
            for gate in answer.gate_results:
                word = {True: "passed", False: "failed", None: "waits for a person"}[gate.passed]
                note = f" ({_cut(gate.feedback, 160)})" if gate.feedback and gate.passed is False else ""
                parts.append(f"{gate.name} {word}{note}")
            return f"Last gates ({task_id}): " + "; ".join(parts)
    return None


def _done(state: RunState) -> str:
    done = [s.name for s in state.steps.values() if s.status == "completed"]
    return "Done: " + (", ".join(done) if done else "no step completed yet")


def context_text(run: RunNow, limit: int = MAX_CONTEXT_CHARS) -> str:
    """The run in at most `limit` characters: id, goal, status and budgets, next action, what is done,
    the last gate results, and each open task with its instructions (cut to fit)."""
    state, view = run.state, run.view
    head = [
        f"loopengt run '{state.run_id}' (loop '{state.loop}') is {state.status}, {_budgets(run)}. "
        "Its state lives in loopengt, outside this conversation: this is where it stands.",
        f"Goal: {_cut(state.goal, 300)}" if state.goal else "",
        f"Next: {_cut(view.next_action, 500)}",
        _done(state),
        _last_gates(state) or "",
    ]
    tail = f"get_run(run_id='{state.run_id}') has the whole run; never declare the work done yourself."
    lines = [line for line in head if line]
    budget = limit - len("\n".join(lines)) - len(tail) - 2
    tasks = list(state.tasks.values())
    if tasks:
        budget -= len("\nOpen tasks:")
        each = max(0, budget // len(tasks))
        lines.append("Open tasks:")
        for task in tasks:
            label = f"- {task.task_id} (step '{task.step}', agent '{task.agent}', attempt {task.attempt}): "
            lines.append(label + _cut(task.instructions, max(20, each - len(label) - 1)))
    lines.append(tail)
    return _cut("\n".join(lines), limit, flat=False)


def continuation(run: RunNow) -> str:
    """What an agent about to stop is told instead: the next action and every open task in full; while
    commands check a submission, to wait for them (get_run with wait_seconds), not to submit again."""
    view = run.view
    if view.checking and not view.tasks:
        names = ", ".join(f"{c.kind} '{c.name}'" for c in view.checking)
        return (
            f"loopengt run '{view.run_id}' ({view.loop}) is checking your submission: the server is running "
            f"{names}. Do not stop yet and do not submit again (your submission is recorded): call "
            f"get_run(run_id='{view.run_id}', wait_seconds={call_wait_seconds()}), which answers as soon as "
            "the run changes, and repeat while its `checking` is not empty; then follow its next_action."
        )
    lines = [
        f"loopengt run '{view.run_id}' ({view.loop}) is still running, turn {view.turn} of at most "
        f"{run.engine.max_turns}: do not stop yet.",
        f"Next: {view.next_action}",
    ]
    for task in view.tasks:
        text = task.instructions
        if len(text) > MAX_TASK_CHARS:
            text = text[:MAX_TASK_CHARS] + f" [... cut; get_run(run_id='{view.run_id}') has the whole task]"
        lines += [
            "",
            f"Task '{task.task_id}' (step '{task.step}', agent '{task.agent}', attempt {task.attempt}):",
            text,
        ]
        if task.feedback:
            feedback = (
                task.feedback if len(task.feedback) <= MAX_TASK_CHARS else task.feedback[-MAX_TASK_CHARS:]
            )
            lines += ["Feedback from the last attempt:", feedback]
        if task.output_schema:
            lines.append("Output schema: " + json.dumps(task.output_schema, separators=(",", ":")))
    lines += ["", "If you cannot do a task, submit it with outcome 'failure' and an error that says why."]
    reason = "\n".join(lines)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + f"\n[... cut; get_run(run_id='{view.run_id}') has the rest]"
    return reason


def store_context(reader: RunReader, run_id: str) -> str:
    """`context_text` of one run by id (the prompt and the resource). Raises NotFound for an unknown run,
    InvalidArgument for a malformed id."""
    return context_text(read_run(reader, check_id(run_id)))
