"""Folds one run's events into spans: remembers what opens, and makes the span of what closes.

One `Fold` serves one `RunTracer.record` call on one run; the spans it makes go through the tracer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopengt_core.model.budget import summed
from loopengt_core.model.events import (
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    Event,
    GateFailed,
    GatePassed,
    OutputSubmitted,
    RunCancelled,
    RunCompleted,
    RunEnded,
    RunFailed,
    RunForked,
    RunStarted,
    StepCompleted,
    TaskExpired,
    TaskIssued,
    UsageRead,
)
from loopengt_core.model.state import RunState
from loopengt_core.service.telemetry.ids import fork_link, span_id, trace_id
from loopengt_core.service.telemetry.trail import Command, Trail, Work, first_line, usage_attributes

if TYPE_CHECKING:
    from opentelemetry.trace import Link

    from loopengt_core.service.telemetry.tracer import RunTracer


class Fold:
    """One `record` call on one run: remember what opens; when `live`, make a span for what closes."""

    def __init__(self, tracer: RunTracer, trail: Trail, run_id: str, state: RunState) -> None:
        self.tracer, self.trail, self.run_id, self.state = tracer, trail, run_id, state
        self.live = True

    def apply(self, event: Event) -> None:
        """Remember what `event` opens; when `live`, make the span of what it closes."""
        at, trail = event.at, self.trail
        trail.seen = event.seq
        match event:
            case RunStarted():
                trail.loop, trail.started_at, trail.parent_run_id = event.loop, at, event.parent_run_id
            case RunForked():
                self._forked(event)
            case TaskIssued():
                trail.work[event.task_id] = Work(
                    event.step,
                    event.attempt,
                    event.agent or event.step,
                    at,
                    judging=event.judging is not None,
                )
            case OutputSubmitted():
                self._submitted(event)
            case UsageRead():
                work = trail.work.get(event.task_id)
                if work is not None and not work.reported:  # a span not ended yet carries it too
                    work.usage = summed(work.usage, event.usage)
            case CommandRequested():
                self._requested(event)
            case CommandStarted():
                if event.command_id in trail.commands:
                    trail.commands[event.command_id].started_at = at
            case CommandAbandoned():
                self._abandoned(event)
            case CommandFinished():
                self._command_finished(event)
            case ApprovalRequested():
                trail.waits[(event.task_id, event.gate)] = at
            case GatePassed() | GateFailed():
                passed = isinstance(event, GatePassed)
                self._gate(
                    event.task_id, event.gate, at, passed=passed, detail=event.feedback, step=event.step
                )
                if isinstance(event, GateFailed):
                    self._close(event.task_id, at, "rejected", event.feedback or f"gate {event.gate} failed")
            case ApprovalGiven() | ApprovalRejected():
                passed = isinstance(event, ApprovalGiven)
                outcome = "approved" if passed else "rejected"
                self._gate(
                    event.task_id,
                    event.gate,
                    at,
                    step=event.step,
                    passed=passed,
                    detail=event.comment,
                    outcome=outcome,
                    by=event.by,
                    via=event.via,
                    client=event.client,
                )
                if not passed:
                    self._close(event.task_id, at, "rejected", event.comment or f"gate {event.gate} failed")
            case TaskExpired():
                self._close(event.task_id, at, "expired", f"expired after {event.after_seconds} s")
            case StepCompleted() if event.task_id:
                self._close(event.task_id, at, "accepted", None)
            case RunCompleted() | RunFailed() | RunCancelled():
                self._ended(event)

    def _submitted(self, event: OutputSubmitted) -> None:
        at, work = event.at, self.trail.work.get(event.task_id)
        if work is not None and event.usage is not None:  # tokens reported: they replace a transcript's
            work.reported = event.usage.tokens() is not None
            work.usage = event.usage if work.reported else summed(work.usage, event.usage)
        if event.outcome != "success":
            self._close(event.task_id, at, "failed", event.error or "reported failure")
        elif work is not None and work.judging:  # the verdict is the judged task's gate span
            self._close(event.task_id, at, "judged", None)
        elif work is not None:
            work.checked_since = at

    def _requested(self, event: CommandRequested) -> None:
        trail, at = self.trail, event.at
        command = Command(
            event.command_id,
            event.kind,
            event.step,
            event.task_id,
            event.gate,
            list(event.argv),
            event.attempt,
            at,
        )
        trail.commands[command.command_id] = command
        if command.kind == "gate" and command.gate:
            trail.waits[(command.task_id, command.gate)] = at
        else:
            trail.work[command.task_id] = Work(command.step, command.attempt or 1, None, at)

    def _forked(self, event: RunForked) -> None:
        """A fork begins with the parent's open work (as of the checkpoint); its spans start at the fork."""
        parent, trail, at = RunState.model_validate(event.state), self.trail, event.at
        trail.loop, trail.started_at, trail.parent_run_id = parent.loop, at, event.parent_run_id
        for task in parent.tasks.values():
            trail.work[task.task_id] = Work(task.step, task.attempt, task.agent, at)
        for evaluation in parent.evaluations.values():
            trail.work.setdefault(evaluation.task_id, Work(evaluation.step, evaluation.attempt, None, at, at))
        for c in parent.commands.values():
            trail.commands[c.command_id] = Command(
                c.command_id, c.kind, c.step, c.task_id, c.gate, list(c.argv), None, at
            )
            if c.kind == "gate" and c.gate:
                trail.waits[(c.task_id, c.gate)] = at
        if parent.approval is not None:
            trail.waits[(parent.approval.task_id, parent.approval.gate)] = at

    def _abandoned(self, event: CommandAbandoned) -> None:
        """A claim given up (its runner died): a span of its own for that attempt; the next claim starts anew."""
        command = self.trail.commands.get(event.command_id)
        if command is None:
            return
        why = "died" if event.reason == "runner_died" else "let its lease run out"
        self._command_span(
            command,
            event.at,
            "abandoned",
            f"its runner {event.runner} {why}",
            key=f"{event.command_id}@{event.seq}",
        )
        command.started_at = None

    def _command_finished(self, event: CommandFinished) -> None:
        command = self.trail.commands.pop(event.command_id, None)
        if command is None:
            return
        exit_code, timed_out, at = event.exit_code, event.timed_out, event.at
        ok = exit_code == 0 and not timed_out and event.cancelled_by is None
        outcome = "succeeded" if ok else ("timed_out" if timed_out else "failed")
        error = None if ok else f"exit code {exit_code}" + (" (timed out)" if timed_out else "")
        if event.cancelled_by is not None:
            outcome, error = "cancelled", f"cancelled by {event.cancelled_by}"
        self._command_span(command, at, outcome, error, exit_code)
        work = self.trail.work.get(command.task_id)
        if command.kind == "step" and work is not None:
            work.checked_since, work.closed = at, not ok

    def _close(self, task_id: str, at: str, outcome: str, error: str | None) -> None:
        work = self.trail.work.get(task_id)
        if work is None or work.closed:
            return
        work.closed = True
        if not self.live or work.agent is None:
            return
        failed = outcome in ("failed", "rejected", "expired")
        self.tracer.span(
            f"invoke_agent {work.agent}",
            self._ids(span_id("task", self.run_id, task_id), span_id("run", self.run_id)),
            work.issued_at,
            at,
            {
                **self._common(),
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": work.agent,
                "loopengt.step": work.step,
                "loopengt.task_id": task_id,
                "loopengt.attempt": work.attempt,
                "loopengt.outcome": outcome,
                **usage_attributes(work.usage),
            },
            error=(first_line(error) or outcome) if failed else None,
        )

    def _gate(
        self,
        task_id: str,
        gate: str,
        at: str,
        *,
        passed: bool | None,
        detail: str | None,
        outcome: str | None = None,
        step: str | None = None,
        by: str | None = None,
        via: str | None = None,
        client: str | None = None,
    ) -> None:
        asked = self.trail.waits.pop((task_id, gate), None)
        work = self.trail.work.get(task_id)
        start = asked or (work.checked_since if work is not None else None) or at
        if work is not None and work.checked_since is not None:
            work.checked_since = at  # the output's next gate starts where this one ended
        if not self.live:
            return
        attributes: dict[str, Any] = {
            **self._common(),
            "loopengt.step": step or (work.step if work is not None else ""),
            "loopengt.task_id": task_id,
            "loopengt.gate": gate,
            "loopengt.outcome": outcome or ("passed" if passed else "failed"),
        }
        if passed is not None:
            attributes["loopengt.gate.passed"] = passed
        if work is not None:
            attributes["loopengt.attempt"] = work.attempt
        if by:
            attributes["loopengt.approval.by"] = by
        if via:
            attributes["loopengt.approval.via"] = via
        if client:
            attributes["loopengt.approval.client"] = client
        self.tracer.span(
            f"loopengt.gate {gate}",
            self._ids(span_id("gate", self.run_id, task_id, gate), self._parent(task_id)),
            start,
            at,
            attributes,
            error=(first_line(detail) or f"gate {gate} failed") if passed is False else None,
        )

    def _command_span(
        self,
        command: Command,
        at: str,
        outcome: str,
        error: str | None,
        exit_code: Any = None,
        *,
        key: str | None = None,
    ) -> None:
        """The command's span; `key`: of one of its attempts that was abandoned (its own span id)."""
        if not self.live:
            return
        name = command.gate or command.step
        attributes: dict[str, Any] = {
            **self._common(),
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": command.command_id,
            "loopengt.step": command.step,
            "loopengt.task_id": command.task_id,
            "loopengt.command.kind": command.kind,
            "loopengt.command.argv": command.argv,
            "loopengt.outcome": outcome,
        }
        if command.gate:
            attributes["loopengt.gate"] = command.gate
        if command.attempt is not None:
            attributes["loopengt.attempt"] = command.attempt
        if isinstance(exit_code, int):
            attributes["loopengt.command.exit_code"] = exit_code
        self.tracer.span(
            f"execute_tool {name}",
            self._ids(
                span_id("command", self.run_id, key or command.command_id), self._parent(command.task_id)
            ),
            command.started_at or command.requested_at,
            at,
            attributes,
            error=error,
        )

    def _ended(self, event: RunEnded) -> None:
        """The run ended: what was still open ends with it (abandoned), then the run's own span."""
        if not self.live:
            return
        at, trail, state = event.at, self.trail, self.state
        for command in list(trail.commands.values()):
            self._command_span(command, at, "abandoned", None)
        for task_id, gate in list(trail.waits):
            self._gate(task_id, gate, at, passed=None, detail=None, outcome="abandoned")
        for task_id in list(trail.work):
            self._close(task_id, at, "abandoned", None)
        outcome = event.type.removeprefix("run_")
        loop = trail.loop or state.loop
        attributes: dict[str, Any] = {
            **self._common(),
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": loop,
            "loopengt.outcome": outcome,
            "loopengt.turns": state.turn,
            **usage_attributes(state.spend),
        }
        links: list[Link] = []
        if trail.parent_run_id:
            attributes["loopengt.parent_run_id"] = trail.parent_run_id
            links.append(fork_link(trail.parent_run_id))
        self.tracer.span(
            f"loopengt.run {loop}",
            self._ids(span_id("run", self.run_id), None),
            trail.started_at or state.started_at,
            at,
            attributes,
            error=(first_line(event.reason) or "failed") if outcome == "failed" else None,
            links=links,
        )

    def _common(self) -> dict[str, Any]:
        run_id = self.run_id
        return {"loopengt.run_id": run_id, "loopengt.loop": self.trail.loop, "gen_ai.conversation.id": run_id}

    def _ids(self, own: int, parent: int | None) -> tuple[int, int, int | None]:
        return trace_id(self.run_id), own, parent

    def _parent(self, task_id: str) -> int:
        """A gate's or command's parent: its agent task's span, else (a command step) the run span."""
        work = self.trail.work.get(task_id)
        if work is not None and work.agent is not None:
            return span_id("task", self.run_id, task_id)
        return span_id("run", self.run_id)
