"""What a process remembers of a run between its appends: open tasks, commands and approval waits.

A span is made only when the event that ends it is durable, so the events that opened it (issue,
request, start) are kept here until then; also the small conversions every span needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loopengt_core.model.budget import Spend, Usage
from loopengt_core.model.events import parse_iso

STATUS_CHARS = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def nanoseconds(at: str) -> int:
    """An event's ISO time as nanoseconds since the epoch (OpenTelemetry's span times)."""
    return (parse_iso(at) - EPOCH) // timedelta(microseconds=1) * 1000


def first_line(text: Any) -> str:
    """The first line of a reason or feedback, cut to STATUS_CHARS: a span's status description."""
    lines = str(text or "").strip().splitlines()
    return lines[0][:STATUS_CHARS] if lines else ""


# --- what a process remembers of a run between its appends ----------------------------------------


@dataclass
class Work:
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
class Command:
    """A requested command (a step's run or a gate's check), kept until it finishes or is abandoned."""

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
class Trail:
    """One run as this process follows it: the last seq folded and the work still open."""

    seen: int = 0
    loop: str = ""
    started_at: str = ""
    parent_run_id: str | None = None
    work: dict[str, Work] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    waits: dict[tuple[str, str], str] = field(default_factory=dict)  # (task_id, gate) -> asked at
