"""Trace and span ids derived from a run's ids, so spans made by different processes join one trace.

No span is held open across processes (see `loopengt_core.service.telemetry`), so a span's id and its parent's id
must be computable by any process from the run, the task, the gate or the command alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import Link

NEXT_IDS: ContextVar[tuple[int, int] | None] = ContextVar("loopengt_next_span_ids", default=None)
"""The (trace, span) ids the next started span takes (set by `RunTracer.span` around `start_span`)."""


def _number(kind: str, parts: Sequence[str], size: int) -> int:
    digest = hashlib.sha256(f"loopengt-{kind}:".encode() + "\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1  # zero is the invalid id


def trace_id(run_id: str) -> int:
    """The OpenTelemetry trace id of a run: derived from its id, so every process exporting it agrees."""
    return _number("trace", [run_id], 16)


def span_id(kind: str, run_id: str, *parts: str) -> int:
    """kind: run (no parts), task (task_id), gate (task_id, gate) or command (command_id)."""
    return _number(kind, [run_id, *parts], 8)


def fork_link(parent_run_id: str) -> Link:
    """A fork's run span points at the run it was forked from (another trace)."""
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    context = SpanContext(
        trace_id(parent_run_id),
        span_id("run", parent_run_id),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return Link(context, {"loopengt.link": "forked_from"})


def id_generator() -> IdGenerator:
    """The tracer provider's id generator: the derived ids in `NEXT_IDS` when set, else random ones."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

    class RunIds(IdGenerator):
        """The ids set in `NEXT_IDS` just before a span starts (derived from the run), else random ones."""

        def __init__(self) -> None:
            self._random = RandomIdGenerator()

        def generate_trace_id(self) -> int:
            chosen = NEXT_IDS.get()
            return chosen[0] if chosen else self._random.generate_trace_id()

        def generate_span_id(self) -> int:
            chosen = NEXT_IDS.get()
            return chosen[1] if chosen else self._random.generate_span_id()

    return RunIds()


# --- configuration by the standard OTEL_* variables -------------------------------------------------
