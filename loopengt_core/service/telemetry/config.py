"""Configuration of tracing by the standard OTEL_* variables: which exporters, one tracer per setting.

Off, and opentelemetry never imported, unless the variables ask for traces and the SDK is installed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from loopengt_core.service.telemetry.tracer import RunTracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger("loopengt.telemetry")

INSTALL_HINT = "pip install 'loopengt[otel]'"


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
