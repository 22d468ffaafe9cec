"""OpenTelemetry tracing of runs: a run is a trace; each agent task, gate and command is a span in it.

A run is driven by several processes over days and any of them can crash, so no span is held open:
a span is made when the event that ends it is durable, by whichever process appended that event,
with start and end times taken from the events and ids derived from the run, the task, the gate or
the command. Spans made by different processes therefore join one coherent trace.

Off, and opentelemetry never imported, unless the standard OTEL_* variables ask for traces and the
SDK is installed (`pip install 'loopengt[otel]'`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from loopengt_core.budget import Spend, Usage, summed
from loopengt_core.events import (
    AnyEvent,
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
    parse_iso,
)
from loopengt_core.state import RunState

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import Link

log = structlog.get_logger("loopengt.telemetry")

INSTALL_HINT = "pip install 'loopengt[otel]'"
MAX_TRAILS = 512  # runs whose open work this process remembers; a forgotten one is re-read from its log
STATUS_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEXT_IDS: ContextVar[tuple[int, int] | None] = ContextVar("loopengt_next_span_ids", default=None)


class EventSource(Protocol):
    """Where a run's earlier events are read from (the store)."""

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """The run's events after seq `after`, at most `limit`."""


# --- ids: the same in every process ----------------------------------------------------------------


def _number(kind: str, parts: Sequence[str], size: int) -> int:
    digest = hashlib.sha256(f"loopengt-{kind}:".encode() + "\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1  # zero is the invalid id


def trace_id(run_id: str) -> int:
    """The OpenTelemetry trace id of a run: derived from its id, so every process exporting it agrees."""
    return _number("trace", [run_id], 16)


def span_id(kind: str, run_id: str, *parts: str) -> int:
    """kind: run (no parts), task (task_id), gate (task_id, gate) or command (command_id)."""
    return _number(kind, [run_id, *parts], 8)


def _ns(at: str) -> int:
    return (parse_iso(at) - _EPOCH) // timedelta(microseconds=1) * 1000


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:STATUS_CHARS] if lines else ""


# --- what a process remembers of a run between its appends ----------------------------------------


@dataclass
class _Work:
    """An agent task, or a command step's run, from issue until its output is accepted or not."""

    step: str
    attempt: int
    agent: str | None  # None: a command step (no task span; its gates hang off the run span)
    issued_at: str
    checked_since: str | None = None
    closed: bool = False
    usage: Usage | None = None  # what its submission reported, else what transcripts said while it was open
    reported: bool = False  # `usage` is the submission's own (it wins over a transcript's)
    judging: bool = False  # a judge gate's task: its span ends with its verdict (outcome `judged`)


def usage_attributes(usage: Usage | Spend | None) -> dict[str, Any]:
    """OTel GenAI usage attributes of a submission's usage (or a run's spend); only what was reported."""
    if usage is None:
        return {}
    if isinstance(usage, Spend):
        if not usage.reported and not usage.costed:
            return {}
        usage = Usage(
            input_tokens=usage.input_tokens if usage.reported else None,
            output_tokens=usage.output_tokens if usage.reported else None,
            cache_read_tokens=usage.cache_read_tokens if usage.reported else None,
            cache_write_tokens=usage.cache_write_tokens if usage.reported else None,
            cost_usd=usage.cost_usd if usage.costed else None,
        )
    pairs = (
        ("gen_ai.usage.input_tokens", usage.input_tokens),
        ("gen_ai.usage.output_tokens", usage.output_tokens),
        ("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens),
        ("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens),
        ("loopengt.usage.cost_usd", usage.cost_usd),
        ("gen_ai.response.model", usage.model),
    )
    return {key: value for key, value in pairs if value is not None}


@dataclass
class _Command:
    command_id: str
    kind: str
    step: str
    task_id: str
    gate: str | None
    argv: list[str]
    attempt: int | None
    requested_at: str
    started_at: str | None = None


@dataclass
class _Trail:
    seen: int = 0
    loop: str = ""
    started_at: str = ""
    parent_run_id: str | None = None
    work: dict[str, _Work] = field(default_factory=dict)
    commands: dict[str, _Command] = field(default_factory=dict)
    waits: dict[tuple[str, str], str] = field(default_factory=dict)  # (task_id, gate) -> asked at


class RunTracer:
    """Turns a run's appended events into spans. `record` never raises: tracing must not stop a run."""

    def __init__(self, processors: Sequence[SpanProcessor], *, resource: Resource | None = None) -> None:
        from opentelemetry.sdk.trace import TracerProvider

        self.provider = TracerProvider(resource=resource or _resource(), id_generator=_id_generator())
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("loopengt", _version())
        self._trails: OrderedDict[str, _Trail] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, source: EventSource, run_id: str, state: RunState, events: Sequence[Event]) -> None:
        """Spans for what `events` (just appended, ending at `state`) close; earlier events come from `source`."""
        if not events:
            return
        with self._lock:
            try:
                self._record(source, run_id, state, events)
            except Exception as exc:  # noqa: BLE001 - a tracing fault is logged and dropped, never raised
                self._trails.pop(run_id, None)
                log.warning("tracing_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")

    def follows(self, run_id: str) -> bool:
        """Whether this process already follows the run (its next `record` reads no earlier events)."""
        with self._lock:
            return run_id in self._trails

    def flush(self, timeout_millis: int = 5000) -> bool:
        """Export the spans not yet sent; False when the exporter did not finish within the timeout."""
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the tracer's exporter."""
        self.provider.shutdown()

    def _record(self, source: EventSource, run_id: str, state: RunState, events: Sequence[Event]) -> None:
        trail = self._trails.pop(run_id, None) or _Trail()
        self._trails[run_id] = trail  # most recent last
        while len(self._trails) > MAX_TRAILS:
            self._trails.popitem(last=False)
        fold = _Fold(self, trail, run_id, state)
        first = events[0].seq
        if trail.seen < first - 1:  # appended by another process (or before this one began): catch up
            fold.live = False
            for earlier in source.events(run_id, after=trail.seen, limit=first - 1 - trail.seen):
                fold.apply(earlier)
            fold.live = True
        for event in events:
            if event.seq > trail.seen:
                fold.apply(event)
        trail.work = {task_id: w for task_id, w in trail.work.items() if not w.closed}
        if state.ended:
            self._trails.pop(run_id, None)

    def span(
        self,
        name: str,
        ids: tuple[int, int, int | None],
        start: str,
        end: str,
        attributes: dict[str, Any],
        *,
        error: str | None,
        links: Sequence[Link] = (),
    ) -> None:
        """One finished span; `ids`: (trace, span, parent span or None for the run's root span)."""
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

        trace_number, own, parent = ids
        context = None
        if parent is not None:
            # the parent's flag is the run's own sampling decision (OTEL_TRACES_SAMPLER decides on the
            # trace id, the same in every process), so a parent-based sampler keeps or drops a whole run
            from opentelemetry.sdk.trace.sampling import Decision

            decided = self.provider.sampler.should_sample(None, trace_number, "loopengt.run").decision
            flags = TraceFlags(
                TraceFlags.SAMPLED if decided is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
            )
            remote = SpanContext(trace_number, parent, is_remote=True, trace_flags=flags)
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        token = _NEXT_IDS.set((trace_number, own))
        try:
            span = self.tracer.start_span(
                name, context=context, attributes=attributes, links=links, start_time=_ns(start)
            )
        finally:
            _NEXT_IDS.reset(token)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=max(_ns(end), _ns(start)))


class _Fold:
    """One `record` call on one run: remember what opens; when `live`, make a span for what closes."""

    def __init__(self, tracer: RunTracer, trail: _Trail, run_id: str, state: RunState) -> None:
        self.tracer, self.trail, self.run_id, self.state = tracer, trail, run_id, state
        self.live = True

    def apply(self, event: Event) -> None:
        at, trail = event.at, self.trail
        trail.seen = event.seq
        match event:
            case RunStarted():
                trail.loop, trail.started_at, trail.parent_run_id = event.loop, at, event.parent_run_id
            case RunForked():
                self._forked(event)
            case TaskIssued():
                trail.work[event.task_id] = _Work(
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
        command = _Command(
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
            trail.work[command.task_id] = _Work(command.step, command.attempt or 1, None, at)

    def _forked(self, event: RunForked) -> None:
        """A fork begins with the parent's open work (as of the checkpoint); its spans start at the fork."""
        parent, trail, at = RunState.model_validate(event.state), self.trail, event.at
        trail.loop, trail.started_at, trail.parent_run_id = parent.loop, at, event.parent_run_id
        for task in parent.tasks.values():
            trail.work[task.task_id] = _Work(task.step, task.attempt, task.agent, at)
        for evaluation in parent.evaluations.values():
            trail.work.setdefault(
                evaluation.task_id, _Work(evaluation.step, evaluation.attempt, None, at, at)
            )
        for c in parent.commands.values():
            trail.commands[c.command_id] = _Command(
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
            error=(_first_line(error) or outcome) if failed else None,
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
            error=(_first_line(detail) or f"gate {gate} failed") if passed is False else None,
        )

    def _command_span(
        self,
        command: _Command,
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
            links.append(_link(trail.parent_run_id))
        self.tracer.span(
            f"loopengt.run {loop}",
            self._ids(span_id("run", self.run_id), None),
            trail.started_at or state.started_at,
            at,
            attributes,
            error=(_first_line(event.reason) or "failed") if outcome == "failed" else None,
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


def _link(parent_run_id: str) -> Link:
    """A fork's run span points at the run it was forked from (another trace)."""
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    context = SpanContext(
        trace_id(parent_run_id),
        span_id("run", parent_run_id),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return Link(context, {"loopengt.link": "forked_from"})


def _id_generator() -> IdGenerator:
    from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

    class RunIds(IdGenerator):
        """The ids set in `_NEXT_IDS` just before a span starts (derived from the run), else random ones."""

        def __init__(self) -> None:
            self._random = RandomIdGenerator()

        def generate_trace_id(self) -> int:
            chosen = _NEXT_IDS.get()
            return chosen[0] if chosen else self._random.generate_trace_id()

        def generate_span_id(self) -> int:
            chosen = _NEXT_IDS.get()
            return chosen[1] if chosen else self._random.generate_span_id()

    return RunIds()


# --- configuration by the standard OTEL_* variables -------------------------------------------------


class TelemetryUnavailable(Exception):
    """The variables ask for something this installation cannot do (a package is missing)."""


_CONFIGURED: dict[tuple[tuple[str, str], ...], RunTracer | None] = {}
_CONFIGURED_LOCK = threading.Lock()


def from_env() -> RunTracer | None:
    """This process's tracer for its OTEL_* variables (one per configuration), or None when tracing is off."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OTEL_")))
    if not key:
        return None  # the common case: nothing to import, nothing to do
    with _CONFIGURED_LOCK:
        if key not in _CONFIGURED:
            try:
                _CONFIGURED[key] = configure(dict(key))
            except Exception as exc:  # noqa: BLE001 - a bad variable must not stop the server: no tracing
                log.warning("tracing_off", reason=f"the OTEL_* variables could not be used: {exc}")
                _CONFIGURED[key] = None
        return _CONFIGURED[key]


def flush() -> None:
    """Export what the tracers of this process still hold (the SDK also shuts them down at exit)."""
    with _CONFIGURED_LOCK:
        tracers = [t for t in _CONFIGURED.values() if t is not None]
    for tracer in tracers:
        tracer.flush()


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the variables ask for: OTEL_TRACES_EXPORTER, else otlp when an OTLP endpoint is set."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def configure(environ: Mapping[str, str]) -> RunTracer | None:
    """A tracer exporting through a BatchSpanProcessor (OTEL_BSP_*) per exporter asked for, or None."""
    names = exporter_names(environ)
    if not names:
        return None
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        if environ.get("OTEL_TRACES_EXPORTER"):  # asked for explicitly: say why nothing is traced
            log.warning(
                "tracing_off",
                reason=f"OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed: {INSTALL_HINT}",
            )
        return None
    processors: list[SpanProcessor] = []
    for name in names:
        try:
            processors.append(BatchSpanProcessor(_exporter(name, environ)))
        except TelemetryUnavailable as exc:
            log.warning("tracing_exporter_off", exporter=name, reason=str(exc))
    return RunTracer(processors) if processors else None


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":  # stderr: stdout carries the MCP protocol
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    if name != "otlp":
        raise TelemetryUnavailable(
            f"unknown exporter {name!r} in OTEL_TRACES_EXPORTER (use otlp, console or none)"
        )
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise TelemetryUnavailable(
                "OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc (pip install it), or set "
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
            ) from None
        grpc: SpanExporter = GrpcExporter()
        return grpc
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TelemetryUnavailable(
            f"the otlp exporter needs opentelemetry-exporter-otlp-proto-http: {INSTALL_HINT}"
        ) from None
    exporter: SpanExporter = OTLPSpanExporter()  # reads its own OTEL_EXPORTER_OTLP_* variables
    return exporter


def _resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, with service.name loopengt when they name none."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: "loopengt", SERVICE_VERSION: _version()}))
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loopengt")
    except PackageNotFoundError:
        return "0"
