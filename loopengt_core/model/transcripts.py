"""Usage read from a client's transcript, split into what each task used.

A hook payload of Claude Code or Codex names the session's transcript (`transcript_path`, JSON lines).
Claude Code writes each assistant message as one or more lines carrying `message.id`, `message.model` and
`message.usage` (the lines of one message repeat its usage: it is counted once, from its last line).
Codex writes `event_msg` lines of type `token_count` whose `info.last_token_usage` is what one model
response used (a repeated line has the same `info.total_token_usage`: it is counted once), and
`turn_context` lines naming the model.

The usage up to and including the call of loopengt's `step` tool that submitted a task is that task's
(Codex reports a response's usage after its function call, so the call's task takes the next
`token_count` too); what follows the last such call belongs to the run's one open task, if it has
exactly one, else it stays unread until a later call says whose it was. Only whole lines are read, from
the offset the run's log recorded last for this transcript, so no line is ever counted twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loopengt_core.model.budget import Usage, summed

TranscriptClient = Literal["claude-code", "codex"]
MAX_READ_BYTES = 32 * 1024 * 1024  # read at most this much per hook call; the rest is read the next time
STEP_TOOL = "step"


@dataclass
class Segment:
    """Transcript lines [start, end) whose usage belongs to `task_id`."""

    task_id: str
    start: int
    end: int
    usage: Usage | None = None
    message_ids: list[str] = field(default_factory=list)


@dataclass
class _Reader:
    """The state of one pass over a chunk: the segment being filled and the ones closed."""

    start: int
    skip_id: str | None
    closed: list[Segment] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)  # message id -> its usage (last line wins)
    pending: str | None = None  # a task whose step call was seen; Codex: closes at the next token count
    model: str | None = None

    def take(self, message_id: str, usage: Usage) -> None:
        if message_id == self.skip_id and message_id not in self.usage:
            return  # counted in the segment before (a message whose lines straddle its end, a repeat)
        self.usage.pop(message_id, None)
        self.usage[message_id] = usage

    def close(self, task_id: str, end: int) -> None:
        total: Usage | None = None
        for usage in self.usage.values():
            total = summed(total, usage)
        self.closed.append(Segment(task_id, self.start, end, total, list(self.usage)))
        self.skip_id = next(reversed(self.usage), self.skip_id)
        self.start, self.usage, self.pending = end, {}, None


def transcript_key(path: str | Path) -> str:
    """How the run's log names a transcript: 16 hex digits of the SHA-256 of its absolute path."""
    return hashlib.sha256(str(Path(path).expanduser().absolute()).encode()).hexdigest()[:16]


def segments(
    client: TranscriptClient,
    data: bytes,
    offset: int,
    *,
    run_id: str,
    skip_id: str | None,
    known: Callable[[str], bool],
    open_task: str | None,
) -> list[Segment]:
    """Split `data` (whole lines read at `offset`) into the usage of each task of run `run_id`.

    `known(task_id)`: a task of this run (a call naming any other task or run closes nothing).
    `open_task`: the task the lines after the last step call belong to (None: they stay unread).
    `skip_id`: the last message the previous read counted.
    """
    reader = _Reader(start=offset, skip_id=skip_id)
    position = offset

    def ours(arguments: Any) -> str | None:
        task_id = _task_of(arguments)
        other_run = isinstance(arguments, dict) and arguments.get("run_id") not in (None, run_id)
        return task_id if task_id is not None and not other_run and known(task_id) else None

    for raw in data.splitlines(keepends=True):
        start, position = position, position + len(raw)
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line the client wrote that is not JSON: no usage in it
        if not isinstance(line, dict):
            continue
        if client == "claude-code":
            _claude_line(reader, line, position, ours)
        else:
            _codex_line(reader, line, start, position, ours)
    if reader.pending is not None and client == "codex":
        reader.close(reader.pending, position)  # the call's response reported no usage after it
    if open_task is not None and reader.usage:
        reader.close(open_task, position)
    return reader.closed


def _claude_line(reader: _Reader, line: dict[str, Any], end: int, ours: Callable[[Any], str | None]) -> None:
    message = line.get("message")
    if line.get("type") != "assistant" or not isinstance(message, dict):
        return
    usage = _usage(
        message.get("usage"),
        input_key="input_tokens",
        cache_read_key="cache_read_input_tokens",
        cache_write_key="cache_creation_input_tokens",
        model=message.get("model"),
    )
    message_id = message.get("id")
    if usage is not None and isinstance(message_id, str):
        reader.take(message_id, usage)
    content = message.get("content")
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_use" and _is_step(block.get("name")):
            task_id = ours(block.get("input"))
            if task_id is not None:
                reader.close(task_id, end)
                return


def _codex_line(
    reader: _Reader, line: dict[str, Any], start: int, end: int, ours: Callable[[Any], str | None]
) -> None:
    payload = line.get("payload")
    if not isinstance(payload, dict):
        return
    kind, inner = line.get("type"), payload.get("type")
    if kind == "turn_context" and isinstance(payload.get("model"), str):
        reader.model = payload["model"]
    elif kind == "event_msg" and inner == "token_count":
        info = payload.get("info")
        if not isinstance(info, dict):
            return  # rate limits only: no usage
        last = info.get("last_token_usage")
        usage = _codex_usage(last, reader.model)
        if usage is None:
            return
        total = info.get("total_token_usage")
        message_id = "total:" + json.dumps(total if isinstance(total, dict) else last, sort_keys=True)
        reader.take(message_id, usage)
        if reader.pending is not None:
            reader.close(reader.pending, end)
    elif kind == "response_item" and inner == "function_call" and _is_step(payload.get("name")):
        task_id = ours(_arguments(payload.get("arguments")))
        if task_id is not None:
            if reader.pending is not None and reader.pending != task_id:
                reader.close(reader.pending, start)
            reader.pending = task_id


def _codex_usage(last: Any, model: str | None) -> Usage | None:
    """Codex counts cached input inside input_tokens (and reasoning inside output_tokens): split it."""
    if not isinstance(last, dict):
        return None
    cached, given = _count(last.get("cached_input_tokens")), _count(last.get("input_tokens"))
    fields = dict(last)
    if given is not None and cached is not None:
        fields["input_tokens"] = max(0, given - cached)
    return _usage(fields, input_key="input_tokens", cache_read_key="cached_input_tokens", model=model)


def _usage(
    raw: Any,
    *,
    input_key: str,
    cache_read_key: str,
    cache_write_key: str | None = None,
    model: Any = None,
) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    values = {
        "input_tokens": _count(raw.get(input_key)),
        "output_tokens": _count(raw.get("output_tokens")),
        "cache_read_tokens": _count(raw.get(cache_read_key)),
        "cache_write_tokens": _count(raw.get(cache_write_key)) if cache_write_key else None,
    }
    known: dict[str, Any] = {name: value for name, value in values.items() if value is not None}
    if isinstance(model, str) and known:
        known["model"] = model[:200]
    return Usage.model_validate(known) if known else None  # unknown fields unset: absent from the record


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**12:
        return value
    return None


def _is_step(name: Any) -> bool:
    """loopengt's step tool as a client names it: `step`, `mcp__loopengt__step`, `loopengt__step`."""
    return isinstance(name, str) and (name == STEP_TOOL or name.endswith(f"__{STEP_TOOL}"))


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _task_of(arguments: Any) -> str | None:
    task_id = arguments.get("task_id") if isinstance(arguments, dict) else None
    return task_id if isinstance(task_id, str) else None
