"""Limits on what a client sends: one mechanism for every value (outputs, inputs, texts, specs).

A value is checked before anything stores, copies or serialises it: its nesting depth and its size
(with a walk that needs no recursion, so a hostile value cannot raise RecursionError), then its JSON
form. Each limit has an environment variable, read when it is applied, and every refusal names the
limit and that variable, so a person who needs more knows what to set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from loopengt_core.errors import InvalidArgument, LoopengtError, TooLarge


@dataclass(frozen=True)
class Limit:
    """A number a deployment may change through `variable`; `default` otherwise."""

    variable: str
    default: int
    unit: str

    def get(self) -> int:
        raw = os.environ.get(self.variable)
        if raw is None or not raw.strip():
            return self.default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise LoopengtError(f"{self.variable} must be a whole number of at least 1 (got {raw!r})")
        return value


MAX_OUTPUT_BYTES = Limit("LOOPENGT_MAX_OUTPUT_BYTES", 4 * 1024 * 1024, "bytes")
MAX_VALUE_BYTES = Limit("LOOPENGT_MAX_VALUE_BYTES", 256 * 1024, "bytes")
MAX_USAGE_BYTES = Limit("LOOPENGT_MAX_USAGE_BYTES", 4 * 1024, "bytes")
MAX_SPEC_BYTES = Limit("LOOPENGT_MAX_SPEC_BYTES", 1024 * 1024, "bytes")
MAX_JSON_DEPTH = Limit("LOOPENGT_MAX_JSON_DEPTH", 64, "levels")
MAX_SPEC_VALUES = Limit("LOOPENGT_MAX_SPEC_VALUES", 250_000, "values")


def too_large(what: str, size: int, limit: Limit, maximum: int, hint: str = "") -> TooLarge:
    shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"
    return TooLarge(
        f"{what} is {shown}; the limit is {maximum} bytes ({limit.variable}){'. ' + hint if hint else ''}"
    )


def too_deep(what: str, maximum: int) -> InvalidArgument:
    return InvalidArgument(
        f"{what} is nested more than {maximum} levels deep; the limit is {maximum} levels "
        f"({MAX_JSON_DEPTH.variable}). Flatten it"
    )


def measure(value: Any, *, max_depth: int, stop_at: int) -> tuple[int, int]:
    """(depth, a lower bound of its JSON size in bytes), walking without recursion.

    Stops early, returning what it has seen, once the depth passes `max_depth` or the size passes
    `stop_at`: the caller refuses the value then, and a huge one is not walked to its end.
    """
    deepest = 0
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list | tuple):
            depth += 1
            deepest = max(deepest, depth)
            if depth > max_depth:
                return deepest, size
            size += 2 + max(len(node) - 1, 0)  # brackets and commas
            items = node.values() if isinstance(node, dict) else node
            stack.extend((item, depth) for item in items)
            if isinstance(node, dict):
                size += sum(len(k) + 3 if isinstance(k, str) else 4 for k in node)
        elif isinstance(node, str):
            size += len(node) + 2
        else:
            size += 1
        if size > stop_at:
            return deepest, size
    return deepest, size


def checked(
    value: Any, what: str, limit: Limit = MAX_VALUE_BYTES, *, maximum: int | None = None, hint: str = ""
) -> tuple[Any, int]:
    """`value` as the log will hold it (tuples become lists, keys text) and its size in bytes.

    Raises InvalidArgument (too deep, not plain JSON) or TooLarge (over `limit`), naming the limit
    and its variable. The cached state is built from the same events the store writes, so a value
    that JSON would change must be changed before the engine sees it, or the live state would differ
    from the fold of the log.
    """
    maximum = maximum or limit.get()
    max_depth = MAX_JSON_DEPTH.get()
    depth, estimate = measure(value, max_depth=max_depth, stop_at=maximum)
    if depth > max_depth:
        raise too_deep(what, max_depth)
    if estimate > maximum:
        raise too_large(what, estimate, limit, maximum, hint)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError) as exc:  # ValueError: NaN/Infinity, lone surrogates, circular data
        raise InvalidArgument(f"{what} must be plain JSON: {exc}") from None
    if size > maximum:
        raise too_large(what, size, limit, maximum, hint)
    return json.loads(text), size


def checked_text(value: Any, what: str, limit: Limit = MAX_VALUE_BYTES) -> str | None:
    """Optional text a client sends (an error, a reason, a comment), within `limit` bytes."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be text (got {type(value).__name__})")
    return str(checked(value, what, limit)[0])


CALL_WAIT = Limit("LOOPENGT_CALL_WAIT", 20, "seconds")


def call_wait_seconds() -> int:
    """How long a call waits for commands (LOOPENGT_CALL_WAIT); the default when the variable is bad, for
    texts that mention it (the service itself raises on a bad value)."""
    try:
        return CALL_WAIT.get()
    except LoopengtError:
        return CALL_WAIT.default
