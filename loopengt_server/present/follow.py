"""`loopengt show RUN_ID --follow`: watch a run live until it ends.

The view only reads: it folds the run's log itself through a `RunReader` instead of asking the runs
service, which would take the run's lock and could append (deadline ticks). Changes from any process on
either store show up because it watches the log: a store that pushes changes (PostgreSQL LISTEN/NOTIFY)
wakes it at once, and every store is also polled through `version(run_id)`, a cheap token, every
`poll_seconds`.

On a terminal it draws a rich Live panel (status, open tasks, steps with attempts, gate results, the last
events); otherwise (a pipe, a file, a test) it prints one plain line per event and a status line when
the run's status or open tasks change, flushing each, so the output can be read as it comes.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loopengt_core.model.events import (
    AnyEvent,
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    CheckpointTaken,
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    Event,
    GateFailed,
    GatePassed,
    OutputSubmitted,
    RetryScheduled,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunResumed,
    RunStarted,
    StepCompleted,
    StepFailed,
    TaskExpired,
    TaskIssued,
    event_data,
    parse_iso,
)
from loopengt_core.model.state import RunState
from loopengt_core.service.metrics import MetricsFold
from loopengt_core.service.reading import RunReader
from loopengt_server.present.wording import plural

RECENT_EVENTS = 10
POLL_SECONDS = 0.2
_DETAIL_CHARS = 160
_STATUS_STYLE = {
    "running": "cyan",
    "waiting_approval": "yellow",
    "paused": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def _short(text: Any, limit: int = _DETAIL_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(event: Event) -> str:
    """One line saying what the event means (the trace has the full data)."""
    match event:
        case RunStarted():
            return f"loop {event.loop}: {_short(event.goal)}"
        case RunForked():
            return f"forked from {event.parent_run_id} at checkpoint {event.checkpoint_id}"
        case TaskIssued() if event.judging is not None:
            return f"{event.task_id} to {event.agent}: judge {event.judging} (gate {event.judge_gate})"
        case TaskIssued():
            feedback = f" - feedback: {_short(event.feedback, 80)}" if event.feedback else ""
            return f"{event.task_id} to {event.agent} (attempt {event.attempt}){feedback}"
        case OutputSubmitted():
            error = f": {_short(event.error, 80)}" if event.error else ""
            by = f" by {event.submitted_by}" if event.submitted_by else ""
            return f"{event.task_id} {event.outcome}{by}{error}"
        case GatePassed() | GateFailed() if event.score is not None:
            verdict = "passed" if isinstance(event, GatePassed) else "failed"
            return f"{event.gate} on {event.task_id} {verdict}, judge's score {event.score:g}: {_short(event.feedback, 200)}"
        case GatePassed():
            return f"{event.gate} on {event.task_id}"
        case GateFailed():
            feedback = f": {_short(event.feedback, 100)}" if event.feedback else ""
            return f"{event.gate} on {event.task_id}{feedback}"
        case CommandRequested():
            return f"{event.command_id}: {_short(' '.join(event.argv), 80)}"
        case CommandStarted():
            return f"{event.command_id} by {event.runner}"
        case CommandAbandoned():
            return f"{event.command_id} abandoned by {event.runner} ({event.reason.replace('_', ' ')})"
        case CommandFinished() if event.cancelled_by:
            return f"{event.command_id}: cancelled by {event.cancelled_by} after {event.duration_seconds}s"
        case CommandFinished() if event.setup_error:
            return f"{event.command_id} cannot run, paused: {_short(event.setup_error, 100)}"
        case CommandFinished():
            return f"{event.command_id}: exit {event.exit_code} in {event.duration_seconds}s"
        case ApprovalRequested():
            return f"gate {event.gate} of step {event.step} waits for a person"
        case ApprovalGiven() | ApprovalRejected():
            comment = f": {_short(event.comment, 80)}" if event.comment else ""
            via = f" via {event.via}" if event.via else ""
            return f"gate {event.gate} by {event.by}{via}{comment}"
        case RetryScheduled():
            return f"{event.step} attempt {event.attempt} in {event.delay_seconds}s"
        case TaskExpired():
            return f"{event.task_id} after {event.after_seconds}s"
        case StepCompleted():
            return event.step
        case StepFailed():
            return event.step + (f": {_short(event.reason, 100)}" if event.reason else "")
        case CheckpointTaken():
            return event.checkpoint_id + (f" ({event.label})" if event.label else "")
        case RunCompleted() | RunFailed() | RunCancelled() | RunResumed():
            return _short(event.reason or "")
    return _short(json.dumps(event_data(event), default=str))


def event_line(event: Event) -> str:
    """One event as `show --trace` prints it: seq, time, type and what happened."""
    return f"{event.seq:>5} {event.at[11:23]} {event.type:<18} {describe(event)}"


def status_line(state: RunState) -> str:
    """Status, turn and what the run waits for: the part of a run that changes a follower's attention."""
    parts = [f"status {state.status}", f"turn {state.turn}"]
    if state.tasks:
        parts.append("open " + ", ".join(f"{t.task_id} ({t.agent})" for t in state.tasks.values()))
    if state.approval is not None:
        parts.append(f"waiting for approval of gate {state.approval.gate} (loopengt approve {state.run_id})")
    if state.due_commands():
        parts.append("running " + ", ".join(c.command_id for c in state.due_commands()))
    if state.status == "paused" and state.error:
        parts.append(f"paused: {state.error} (once fixed: loopengt resume {state.run_id})")
    return "; ".join(parts)


def end_line(state: RunState) -> str:
    """How the run ended, in one line."""
    if state.status == "completed":
        return f"run {state.run_id} completed after {plural(state.turn, 'turn')}"
    return f"run {state.run_id} {state.status}: {state.error or 'no reason given'}"


class Follower:
    """Reads a run's new events as they arrive and folds them; `wait()` blocks until something may have changed."""

    def __init__(self, reader: RunReader, run_id: str, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.reader = reader
        self.run_id = run_id
        self.poll_seconds = poll_seconds
        self.fold = MetricsFold()
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)
        if reader.pushes_changes:
            reader.changes(0)  # start listening before the first read, so no change falls in between
        self._version = reader.version(run_id)
        self.pull()

    @property
    def state(self) -> RunState:
        """The run's state as far as it has been followed."""
        assert self.fold.state is not None
        return self.fold.state

    def pull(self) -> list[AnyEvent]:
        """Fold the events appended since the last pull."""
        after = 0 if self.fold.state is None else self.fold.state.seq
        new = self.reader.events(self.run_id, after=after)
        for event in new:
            self.fold.add(event)
            self.recent.append(event)
        return new

    def wait(self) -> list[AnyEvent]:
        """Sleep until a notification or the poll interval; then the new events, if the log changed."""
        self.reader.changes(self.poll_seconds)
        version = self.reader.version(self.run_id)
        if version == self._version:
            return []
        self._version = version
        return self.pull()


def _elapsed(state: RunState, now: datetime) -> str:
    end = parse_iso(state.ended_at) if state.ended_at else now
    seconds = max(0, int((end - parse_iso(state.started_at)).total_seconds()))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def render(follower: Follower, now: datetime) -> Group:
    """The live panel: header, open work, steps, gates, last events."""
    state = follower.state
    style = _STATUS_STYLE.get(state.status, "white")
    header = Text.assemble(
        (state.run_id, "bold"),
        f"  loop {state.loop}  ",
        (state.status, f"bold {style}"),
        f"  turn {state.turn}  elapsed {_elapsed(state, now)}  seq {state.seq}",
    )
    parts: list[Any] = [header]
    if state.error:
        parts.append(Text(f"reason: {state.error}", style="red"))
    work = Table("open task", "step", "agent", "attempt", "expires", box=None, pad_edge=False)
    for task in state.tasks.values():
        work.add_row(task.task_id, task.step, task.agent, str(task.attempt), task.expires_at or "")
    if state.tasks:
        parts.append(work)
    if state.approval is not None:
        parts.append(
            Text(
                f"waiting for a person: gate {state.approval.gate} of step {state.approval.step} "
                f"(loopengt approve {state.run_id} [--reject --comment ...])",
                style="yellow",
            )
        )
    for command in state.commands.values():
        parts.append(Text(f"command {command.command_id}: {' '.join(command.argv)[:100]}", style="cyan"))
    steps = Table("step", "status", "attempts", box=None, pad_edge=False)
    for step in state.steps.values():
        steps.add_row(
            step.name, Text(step.status, style=_STATUS_STYLE.get(step.status, "")), str(step.attempts)
        )
    parts.append(steps)
    gates = follower.fold.gates
    if gates:
        table = Table("gate", "passed", "failed", box=None, pad_edge=False)
        for stats in gates.values():
            table.add_row(stats.gate, str(stats.passed), str(stats.failed))
        parts.append(table)
    parts.append(Text("last events", style="bold"))
    parts.extend(Text(event_line(e), overflow="ellipsis", no_wrap=True) for e in follower.recent)
    return Group(*parts)


def follow_plain(follower: Follower, out: TextIO) -> RunState:
    """Line output: the current state and last events, then one line per new event until the run ends."""

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    state = follower.state
    say(f"run {state.run_id} (loop {state.loop}): {status_line(state)}")
    say("steps: " + ", ".join(f"{s.name} {s.status} ({s.attempts})" for s in state.steps.values()))
    for event in follower.recent:
        say(event_line(event))
    last = status_line(state)
    if not state.ended:
        say("following; this ends when the run ends (Ctrl-C to stop watching)")
    while not follower.state.ended:
        new = follower.wait()
        for event in new:
            say(event_line(event))
        now_line = status_line(follower.state)
        if new and now_line != last and not follower.state.ended:
            say("  " + now_line)
            last = now_line
    say(end_line(follower.state))
    return follower.state


def follow_live(follower: Follower, console: Console) -> RunState:
    """The rich Live panel, redrawn on every change and every poll (the elapsed time moves)."""
    with Live(render(follower, datetime.now(UTC)), console=console, auto_refresh=False) as live:
        while not follower.state.ended:
            follower.wait()
            live.update(render(follower, datetime.now(UTC)), refresh=True)
    console.print(end_line(follower.state), highlight=False)
    return follower.state


def follow(
    reader: RunReader,
    run_id: str,
    *,
    console: Console | None = None,
    out: TextIO | None = None,
    live: bool | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> RunState:
    """Watch the run until it ends and return its final state. `live=None` chooses by whether stdout is a TTY.

    Raises:
        NotFound: no such run (or it was deleted while being watched).
    """
    console = console or Console(highlight=False)
    follower = Follower(reader, run_id, poll_seconds=poll_seconds)
    use_live = console.is_terminal and not console.is_dumb_terminal if live is None else live
    if use_live:
        return follow_live(follower, console)
    return follow_plain(follower, out or sys.stdout)
