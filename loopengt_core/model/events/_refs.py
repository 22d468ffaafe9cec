"""Outputs by reference: a task's input names the outputs it holds by the seq of the event recording them.

An output is recorded once, in `output_submitted` (or a command step's `command_finished` result).
`task_issued` keeps its input with null where an earlier output goes and `input_refs`, JSON Pointers
(RFC 6901) into the input mapped to that output's seq; `step_completed` names its output by `output_seq`.
The fold and every reader that shows an input put the outputs back with `materialised`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

DEPTH = 3  # input -> key -> key: where the patterns put outputs (previous.output, dependencies.<step>, ...)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def by_reference(
    task_input: dict[str, Any], known: Mapping[int, int]
) -> tuple[dict[str, Any], dict[str, int]]:
    """The input as the log keeps it (null where a known output is) and its refs (pointer -> seq).

    `known`: id() of an output object the state holds -> the seq recording it. Matching by identity
    costs nothing per byte of output; a value that is only equal to an output is written in full, which
    is still right, only bigger. The input is copied only along the paths that change.
    """
    refs: dict[str, int] = {}
    if not known:
        return task_input, refs

    def walk(node: dict[str, Any], prefix: str, depth: int) -> dict[str, Any]:
        out = node
        for key, value in node.items():
            if not isinstance(value, dict | list):
                continue
            path = f"{prefix}/{_escape(key)}"
            seq = known.get(id(value))
            if seq is not None:
                replaced: Any = None
                refs[path] = seq
            elif isinstance(value, dict) and depth < DEPTH:
                replaced = walk(value, path, depth + 1)
                if replaced is value:
                    continue
            else:
                continue
            if out is node:
                out = dict(node)
            out[key] = replaced
        return out

    return walk(task_input, "", 1), refs


def materialised(
    task_input: dict[str, Any], refs: Mapping[str, int], output_at: Callable[[int], Any]
) -> dict[str, Any]:
    """The input with each referenced output put back (`output_at(seq)`); the logged input is not changed.

    Raises:
        ValueError: a pointer that does not lead to a key of the input.
    """
    if not refs:
        return task_input
    result = dict(task_input)
    for pointer, seq in refs.items():
        parts = [_unescape(p) for p in pointer.split("/")[1:]]
        if not parts or pointer[:1] != "/":
            raise ValueError(f"input_refs: {pointer!r} is not a JSON Pointer into the input")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                raise ValueError(f"input_refs: {pointer!r} does not lead to a key of the input")
            node[part] = node = dict(child)  # copy on the way down: the logged input stays as it was
        if parts[-1] not in node:
            raise ValueError(f"input_refs: {pointer!r} does not lead to a key of the input")
        node[parts[-1]] = output_at(seq)
    return result
