"""Reading a JMESPath condition: compile it, check its function calls, and tell whether it reads only
the scope's names at its top level (which decides its dialect, see `loopengt_core.model.expressions`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.functions import Functions

_JP_FUNCTIONS: dict[str, Any] = Functions.FUNCTION_TABLE
# Node types whose first child is read from where the node stands and the others from its result.
_JP_CHAINS = {
    "subexpression",
    "index_expression",
    "pipe",
    "projection",
    "value_projection",
    "filter_projection",
}


def _jp_walk(node: Any, at_top: bool) -> Iterator[tuple[str, str, int]]:
    """("field", name, 0) for each field read from the top of the scope; ("function", name, args)."""
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    children = node.get("children") or []
    if kind == "field" and at_top:
        yield "field", str(node.get("value")), 0
    if kind == "function_expression":
        yield "function", str(node.get("value")), len(children)
    for i, child in enumerate(children):
        if kind in _JP_CHAINS:
            inherit = at_top and i == 0
        elif kind == "expref":
            inherit = False
        else:
            inherit = at_top
        yield from _jp_walk(child, inherit)


def _jp_function_problem(name: str, count: int) -> str | None:
    entry = _JP_FUNCTIONS.get(name)
    if entry is None:
        return f"unknown function {name}()"
    signature = entry["signature"]
    variadic = bool(signature) and signature[-1].get("variadic", False)
    if (count < len(signature)) if variadic else (count != len(signature)):
        want = f"at least {len(signature)}" if variadic else str(len(signature))
        return f"{name}() takes {want} argument{'s' if want != '1' else ''}, got {count}"
    return None


@dataclass(frozen=True)
class ParsedJMESPath:
    """What reading a condition as JMESPath found (`compile_condition` weighs it against Python)."""

    compiled: Any  # None when not usable
    reason: str  # why not usable
    parsed: bool  # it compiles (but may call what JMESPath does not have)
    clean: bool  # it reads only the scope's names at its top level


def parse_jmespath(text: str, names: tuple[str, ...]) -> ParsedJMESPath:
    """`text` read as JMESPath over the scope `names`: compiled if usable, else why not."""
    try:
        compiled = jmespath.compile(text)
    except JMESPathError as exc:
        return ParsedJMESPath(None, " ".join(str(exc).split()), False, False)
    except (ValueError, RecursionError) as exc:  # the lexer and parser are not fuzz-hardened
        return ParsedJMESPath(None, " ".join(str(exc).split()) or type(exc).__name__, False, False)
    clean = True
    for kind, name, count in _jp_walk(compiled.parsed, True):
        if kind == "function":
            problem = _jp_function_problem(name, count)
            if problem is not None:
                return ParsedJMESPath(None, problem, True, False)
        elif name not in names:
            clean = False
    return ParsedJMESPath(compiled, "", True, clean)
