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

from loopengt_core.model.errors import InvalidArgument, LoopengtError, TooLarge


@dataclass(frozen=True)
class Limit:
    """A number a deployment may change through `variable`; `default` otherwise."""

    variable: str
    default: int
    unit: str

    def get(self) -> int:
        """The limit now: its environment variable if set, else the default.

        Raises:
            LoopengtError: the variable is set but not a whole number of at least 1.
        """
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
    """The error for an input of `size` bytes over `maximum`, naming the variable that raises it."""
    shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"
    return TooLarge(
        f"{what} is {shown}; the limit is {maximum} bytes ({limit.variable}){'. ' + hint if hint else ''}"
    )


def too_deep(what: str, maximum: int) -> InvalidArgument:
    """The error for JSON nested deeper than `maximum` levels."""
    return InvalidArgument(
        f"{what} is nested more than {maximum} levels deep; the limit is {maximum} levels "
        f"({MAX_JSON_DEPTH.variable}). Flatten it"
    )


def measure(value: Any, *, max_depth: int, stop_at: int) -> tuple[int, int]:
    """(depth, a lower bound of its JSON size in bytes), walking without recursion.

    Stops early, returning what it has seen, once the depth passes `max_depth` or the size passes
    `stop_at`: the caller refuses the value then, and a huge one is not walked to its end.
    """
    return _walk(value, max_depth, stop_at)[:2]


_SCALARS = (str, int, bool, type(None))


def _walk(value: Any, max_depth: int, stop_at: int) -> tuple[int, int, bool]:
    """`measure`, and whether the value is already what JSON would give back (dicts with text keys,
    lists, str/int/float/bool/None and nothing derived from them), so it needs no copy to be logged."""
    deepest = 0
    size = 0
    plain = True
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if isinstance(node, dict | list | tuple):
            depth += 1
            deepest = max(deepest, depth)
            if depth > max_depth:
                return deepest, size, False
            size += 2 + max(len(node) - 1, 0)  # brackets and commas
            items = node.values() if isinstance(node, dict) else node
            stack.extend((item, depth) for item in items)
            if kind is dict:
                size += sum(len(k) + 3 if type(k) is str else 4 for k in node)
                plain = plain and all(type(k) is str for k in node)
            elif kind is not list:
                plain = False
        elif isinstance(node, str):
            size += len(node) + 2
            plain = plain and kind is str
        else:
            size += 1
            plain = plain and (kind in _SCALARS or kind is float)
        if size > stop_at:
            return deepest, size, False
    return deepest, size, plain


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
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())  # as the log holds it: compact
    except (TypeError, ValueError) as exc:  # ValueError: NaN/Infinity, lone surrogates, circular data
        raise InvalidArgument(f"{what} must be plain JSON: {exc}") from None
    if size > maximum:
        raise too_large(what, size, limit, maximum, hint)
    return json.loads(text), size


def checked_canonical(
    value: Any, what: str, limit: Limit = MAX_VALUE_BYTES, *, maximum: int | None = None, hint: str = ""
) -> tuple[Any, str]:
    """`checked`'s value, and its canonical JSON (compact, keys sorted, ASCII) that identifies it.

    One encoding does it all for the common value, plain JSON in ASCII: it proves the value is JSON and
    its length is the value's compact UTF-8 size; the value is then copied by its containers alone (the
    caller may change its own object afterwards; `checked` encodes and parses it again for that). Anything
    else (non-ASCII text, tuples, keys that are not text, deep nesting) goes through `checked` first.
    """
    maximum = maximum or limit.get()
    max_depth = MAX_JSON_DEPTH.get()
    depth, estimate, plain = _walk(value, max_depth, maximum)
    if depth > max_depth:
        raise too_deep(what, max_depth)
    if estimate > maximum:
        raise too_large(what, estimate, limit, maximum, hint)
    if plain and depth <= _COPY_DEPTH:
        try:
            text = _canonical(value)
        except (TypeError, ValueError) as exc:  # NaN/Infinity, circular data
            raise InvalidArgument(f"{what} must be plain JSON: {exc}") from None
        if "\\u" not in text:  # ASCII throughout: no escape lengthened it, no lone surrogate hides in it
            if len(text) > maximum:
                raise too_large(what, len(text), limit, maximum, hint)
            return _copied(value), text
    value = checked(value, what, limit, maximum=maximum, hint=hint)[0]
    return value, _canonical(value)


_COPY_DEPTH = 200  # `_copied` recurses: deeper values take `checked`'s way


def _copied(node: Any) -> Any:
    """A plain JSON value with its own dicts and lists (text and numbers are immutable and shared)."""
    kind = type(node)
    if kind is dict:
        return {key: _copied(item) for key, item in node.items()}
    if kind is list:
        return [_copied(item) for item in node]
    return node


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


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
