"""OpenTelemetry tracing of runs: a run is a trace; each agent task, gate and command is a span in it.

A run is driven by several processes over days and any of them can crash, so no span is held open:
a span is made when the event that ends it is durable, by whichever process appended that event,
with start and end times taken from the events and ids derived from the run, the task, the gate or
the command. Spans made by different processes therefore join one coherent trace.

Off, and opentelemetry never imported, unless the standard OTEL_* variables ask for traces and the
SDK is installed (`pip install 'loopengt[otel]'`).
"""

from loopengt_core.service.telemetry.config import (
    INSTALL_HINT,
    TelemetryUnavailable,
    configure,
    exporter_names,
    flush,
    from_env,
)
from loopengt_core.service.telemetry.ids import span_id, trace_id
from loopengt_core.service.telemetry.tracer import EventSource, RunTracer
from loopengt_core.service.telemetry.trail import usage_attributes

__all__ = [
    "INSTALL_HINT",
    "EventSource",
    "RunTracer",
    "TelemetryUnavailable",
    "configure",
    "exporter_names",
    "flush",
    "from_env",
    "span_id",
    "trace_id",
    "usage_attributes",
]
