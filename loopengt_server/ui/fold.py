"""A run's tasks as a person reads them: each task's instructions, input, output, feedback, gates, files.

Folded from the run's events, incrementally (the web view feeds it only the events it has not seen;
`loopengt report` feeds it the whole log), so both show the same thing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from loopengt_core.model.events import (
    AnyEvent,
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    CommandFinished,
    CommandRequested,
    Event,
    GateFailed,
    GatePassed,
    OutputSubmitted,
    RunForked,
    RunStarted,
    TaskExpired,
    TaskIssued,
    materialised,
)
from loopengt_server.present.follow import describe


class GateRecord(BaseModel):
    """One gate's check of a task's submission, as the web view shows it."""

    gate: str = Field(description="The gate's name.")
    passed: bool | None = Field(None, description="None while it runs or waits for a person.")
    feedback: str | None = Field(None, description="Why it failed (or an approver's comment).")
    output: str | None = Field(None, description="A command gate's full output (its stored tail).")
    exit_code: int | None = Field(None, description="A command gate's exit code.")
    duration_seconds: float | None = Field(None, description="How long a command gate ran.")
    approval: str | None = Field(None, description="Who answered an approval gate, through what, and why.")
    score: float | None = Field(None, description="A judge gate's score (its reasons are the feedback).")


class TaskRecord(BaseModel):
    """One task as the web view shows it: what was asked, what came back, and its gates."""

    task_id: str = Field(description="The task's id, `<step>#<n>`.")
    step: str = Field(description="The step it belongs to.")
    agent: str | None = Field(None, description="The agent that does it; None for a command step.")
    attempt: int = Field(description="Which attempt at the step it is.")
    issued_at: str = Field(description="When it was issued, ISO 8601 UTC.")
    command: list[str] | None = Field(None, description="A command step's argv (no agent).")
    instructions: str | None = Field(None, description="The task's instructions as issued.")
    input: Any = Field(None, description="The task's input as issued.")
    feedback: str | None = Field(None, description="Why the previous attempt failed, as the task said.")
    outcome: str | None = Field(None, description="success, failure, expired; None while open.")
    output: Any = Field(None, description="What was submitted (a command step's result or output).")
    error: str | None = Field(None, description="Why it failed or could not run.")
    submitted_at: str | None = Field(
        None,
        description="When its output was submitted, ISO 8601 UTC; None while open.",
    )
    gates: list[GateRecord] = Field(default_factory=list, description="Its gates' checks of the submission.")
    base_tree: str | None = Field(None, description="The files before this task (the last recorded tree).")
    tree: str | None = Field(None, description="The files this task's submission recorded.")


class EventLine(BaseModel):
    """One line of the web view's timeline."""

    seq: int = Field(description="The event's seq in the run's log.")
    at: str = Field(description="When it was recorded, ISO 8601 UTC.")
    type: str = Field(description="The event's type (`task_issued`, `gate_failed`, ...).")
    text: str = Field(description="The event in one line for a person.")


class TaskFold:
    """Tasks by id, fed events in log order; `touched` collects the ids changed since it was last cleared."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskRecord] = {}
        self.touched: set[str] = set()
        self.seq = 0
        self.last_tree: str | None = None
        self.outputs: dict[int, Any] = {}  # seq -> the output an event records, for inputs that refer to it

    def add(self, events: list[AnyEvent]) -> list[EventLine]:
        """Fold more events into the tasks; their timeline lines."""
        for event in events:
            self._add(event)
            self.seq = event.seq
        return [line(e) for e in events]

    def take_touched(self) -> list[TaskRecord]:
        """The tasks changed since the last call (what a page is sent)."""
        out = [self.tasks[t] for t in sorted(self.touched) if t in self.tasks]
        self.touched.clear()
        return out

    def _task(self, task_id: str) -> TaskRecord | None:
        found = self.tasks.get(task_id)
        if found is not None:
            self.touched.add(task_id)
        return found

    def _gate(self, task_id: str, name: str) -> GateRecord | None:
        task = self._task(task_id)
        if task is None:
            return None
        for gate in task.gates:
            if gate.gate == name:
                return gate
        gate = GateRecord(gate=name)
        task.gates.append(gate)
        return gate

    def _add(self, event: AnyEvent) -> None:
        match event:
            case RunStarted() | RunForked() if event.workspace is not None:
                self.last_tree = event.workspace.tree
            case TaskIssued():
                task_input = (
                    materialised(event.input or {}, event.input_refs, self._output_at)
                    if event.input_refs
                    else event.input
                )
                self._issued(event, agent=event.agent, instructions=event.instructions, input=task_input)
                self.tasks[event.task_id].feedback = event.feedback
            case CommandRequested() if event.kind == "step" and event.task_id not in self.tasks:
                self._issued(event, command=event.argv)
            case CommandRequested() if event.kind == "gate" and event.gate is not None:
                self._gate(event.task_id, event.gate)
            case OutputSubmitted():
                self.outputs[event.seq] = event.output
                if (task := self._task(event.task_id)) is not None:
                    task.outcome, task.output, task.error = event.outcome, event.output, event.error
                    task.submitted_at = event.at
                    self._files(task, event.workspace.tree if event.workspace else None)
            case CommandFinished():
                self.outputs[event.seq] = event.result
                self._finished(event)
            case GatePassed() | GateFailed():
                if (gate := self._gate(event.task_id, event.gate)) is not None:
                    gate.passed = isinstance(event, GatePassed)
                    gate.feedback = event.feedback
                    gate.score = event.score
            case ApprovalRequested():
                self._gate(event.task_id, event.gate)
            case ApprovalGiven() | ApprovalRejected():
                if (gate := self._gate(event.task_id, event.gate)) is not None:
                    gate.passed = isinstance(event, ApprovalGiven)
                    word = "approved" if gate.passed else "rejected"
                    via = f" via {event.via}" if event.via else ""
                    said = f": {event.comment}" if event.comment else ""
                    gate.approval = f"{word} by {event.by or 'a person'}{via}{said}"
            case TaskExpired():
                if (task := self._task(event.task_id)) is not None:
                    task.outcome = "expired"
            case _:
                pass

    def _output_at(self, seq: int) -> Any:
        """An output an input refers to; None if this fold did not see its event (it shows what it can)."""
        return self.outputs.get(seq)

    def _issued(self, event: TaskIssued | CommandRequested, **fields: Any) -> None:
        """A task (an agent's, or a command step's run) starts."""
        self.tasks[event.task_id] = TaskRecord(
            task_id=event.task_id, step=event.step, attempt=event.attempt, issued_at=event.at, **fields
        )
        self.touched.add(event.task_id)

    def _finished(self, event: CommandFinished) -> None:
        task_id, _, gate_name = event.command_id.partition(":")
        tree = event.workspace.tree if event.workspace else None
        if gate_name:
            if (gate := self._gate(task_id, gate_name)) is not None:
                gate.output, gate.exit_code = event.output, event.exit_code
                gate.duration_seconds = event.duration_seconds
            return
        if (task := self._task(task_id)) is not None:
            task.output = event.result if event.result is not None else event.output
            task.outcome = "success" if event.exit_code == 0 else "failure"
            task.error = event.setup_error
            task.submitted_at = event.at
            self._files(task, tree)

    def _files(self, task: TaskRecord, tree: str | None) -> None:
        if tree is not None:
            task.base_tree, task.tree = self.last_tree, tree
            self.last_tree = tree


def line(event: Event) -> EventLine:
    """One timeline entry: what `show --follow` prints for the event."""
    return EventLine(seq=event.seq, at=event.at, type=event.type, text=describe(event))
