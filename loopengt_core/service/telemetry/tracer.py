"""The tracer of runs: turns a run's appended events into finished OpenTelemetry spans.

It catches up on events appended by other processes (read from the store) before folding the new ones,
and never raises: tracing must not stop a run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from loopengt_core.model.events import AnyEvent, Event
from loopengt_core.model.state import RunState
from loopengt_core.service.telemetry.fold import Fold
from loopengt_core.service.telemetry.ids import NEXT_IDS, id_generator
from loopengt_core.service.telemetry.trail import Trail, nanoseconds

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import Link

log = structlog.get_logger("loopengt.telemetry")

MAX_TRAILS = 512  # runs whose open work this process remembers; a forgotten one is re-read from its log


class EventSource(Protocol):
    """Where a run's earlier events are read from (the store)."""

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """The run's events after seq `after`, at most `limit`."""


class RunTracer:
    """Turns a run's appended events into spans. `record` never raises: tracing must not stop a run."""

    def __init__(self, processors: Sequence[SpanProcessor], *, resource: Resource | None = None) -> None:
        from opentelemetry.sdk.trace import TracerProvider

        self.provider = TracerProvider(resource=resource or default_resource(), id_generator=id_generator())
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("loopengt", package_version())
        self._trails: OrderedDict[str, Trail] = OrderedDict()
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
        trail = self._trails.pop(run_id, None) or Trail()
        self._trails[run_id] = trail  # most recent last
        while len(self._trails) > MAX_TRAILS:
            self._trails.popitem(last=False)
        fold = Fold(self, trail, run_id, state)
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
        token = NEXT_IDS.set((trace_number, own))
        try:
            span = self.tracer.start_span(
                name, context=context, attributes=attributes, links=links, start_time=nanoseconds(start)
            )
        finally:
            NEXT_IDS.reset(token)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=max(nanoseconds(end), nanoseconds(start)))


def default_resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, with service.name loopengt when they name none."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: "loopengt", SERVICE_VERSION: package_version()}))
    return found


def package_version() -> str:
    """The installed loopengt version (the tracer's and the service's version), 0 when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loopengt")
    except PackageNotFoundError:
        return "0"
