"""The sandbox that evaluates Python-style conditions: simpleeval with only the allowed functions and
methods, and limits on steps, time and work so that no condition can run long or fill memory."""

from __future__ import annotations

import ast
import operator as op
import time
from collections.abc import Callable, Mapping
from typing import Any

import simpleeval

from loopengt_core.model.expressions.errors import ConditionFailed

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "sum": sum,
    "any": any,
    "all": all,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "round": round,
    "sorted": sorted,
    "list": list,
}

# Methods by the exact type of the value (JSON values only). Nothing that can grow a value much
# (join, replace, ljust, center, zfill, expandtabs, format) is here.
METHODS: dict[type, frozenset[str]] = {
    dict: frozenset({"get", "keys", "values", "items"}),
    str: frozenset(
        {
            "lower", "upper", "casefold", "strip", "lstrip", "rstrip", "startswith", "endswith",
            "split", "splitlines", "count", "find", "isdigit", "isnumeric", "isalpha", "isalnum",
            "isspace", "islower", "isupper",
        }
    ),
    list: frozenset({"count", "index"}),
}  # fmt: skip
ALL_METHODS: frozenset[str] = frozenset().union(*METHODS.values())

MAX_STEPS = 100_000  # syntax-tree nodes evaluated, comprehension rounds included
MAX_SECONDS = 2.0  # a backstop: MAX_STEPS ends any evaluation long before this
MAX_ITEMS = 100_000  # characters or items that one `+` or `*` may produce
MAX_WORK = 1_000_000  # items all operators, functions and methods may be given in one evaluation
CHARS_PER_ITEM = 16  # ... where this many characters of a string count as one item


class Sandbox(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval has no type hints
    """simpleeval with our functions, methods and limits; JSON data in, never Python objects out.

    Every operator, function and method call pays for the size of what it is given (characters of
    a string, items of a list or object, counted through nesting) from one budget of MAX_WORK per
    evaluation, so no condition can spend more than a bounded amount of time or memory, whatever the
    data: `[output] * 1000` or `str([output['log'] for x in output['items']])` stop with a message.
    """

    def __init__(self, names: Mapping[str, Any]) -> None:
        operators: dict[type, Callable[..., Any]] = {
            k: self._charged(v) for k, v in simpleeval.DEFAULT_OPERATORS.items() if k not in _NO_OPERATORS
        }
        operators[ast.Add] = self._add
        operators[ast.Mult] = self._mult
        operators[ast.Mod] = self._charged(_mod)
        functions = {
            name: fn if name in _CONSTANT_TIME else self._charged(fn) for name, fn in FUNCTIONS.items()
        }
        super().__init__(operators=operators, functions=functions, names=dict(names))
        self.functions = functions  # the base class adds dict, set and tuple
        self.ATTR_INDEX_FALLBACK = False
        for kind in (ast.JoinedStr, ast.FormattedValue, ast.DictComp):
            self.nodes.pop(kind, None)
        self._steps = MAX_STEPS
        self._work = MAX_WORK
        self._deadline = time.monotonic() + MAX_SECONDS

    def _eval(self, node: ast.AST) -> Any:
        self._steps -= 1
        if self._steps < 0:
            raise ConditionFailed(f"more than {MAX_STEPS} evaluation steps")
        if time.monotonic() > self._deadline:
            raise ConditionFailed(f"took longer than {MAX_SECONDS:g} s")
        return super()._eval(node)

    def _check_disallowed_items(self, item: Any) -> None:
        # The names hold JSON data and only FUNCTIONS and METHODS can be reached, so the base class's
        # walk of every intermediate value (slow on a large output) would find nothing: check the
        # value itself.
        if callable(item) and item in simpleeval.DISALLOW_FUNCTIONS:
            raise simpleeval.FeatureNotAvailable("this function is not available")

    def _charge(self, *values: Any, times: int = 1) -> None:
        """Spend the size of `values` (`times` over) from the budget; raise before it runs out."""
        left = self._work // max(times, 1)
        stack = list(values)
        while stack:
            value = stack.pop()
            left -= 1
            if isinstance(value, str | bytes):
                left -= len(value) // CHARS_PER_ITEM
            elif isinstance(value, list | tuple | set | frozenset | dict):
                left -= len(value)
                if left >= 0:
                    stack.extend(value.values() if isinstance(value, dict) else value)
            if left < 0:
                raise ConditionFailed(
                    f"the condition works on too much data (more than {MAX_WORK} items in all; "
                    f"{CHARS_PER_ITEM} characters count as one)"
                )
        self._work = left * max(times, 1) + self._work % max(times, 1)

    def _charged(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._charge(*args, *kwargs.values())
            return fn(*args, **kwargs)

        return call

    def _add(self, a: Any, b: Any) -> Any:
        if hasattr(a, "__len__") and hasattr(b, "__len__") and len(a) + len(b) > MAX_ITEMS:
            raise ConditionFailed(f"a value longer than {MAX_ITEMS} items or characters")
        result = a + b
        self._charge(result)
        return result

    def _mult(self, a: Any, b: Any) -> Any:
        for seq, times in ((a, b), (b, a)):
            if hasattr(seq, "__len__") and isinstance(times, int):
                if len(seq) * times > MAX_ITEMS:
                    raise ConditionFailed(f"a value longer than {MAX_ITEMS} items or characters")
                self._charge(seq, times=times)  # before the product exists
        return a * b

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        result = super()._eval_subscript(node)
        if isinstance(node.slice, ast.Slice):
            self._charge(result)
        return result

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise simpleeval.FeatureNotAvailable(f"attribute '{node.attr}' is not allowed")
        value = self._eval(node.value)
        if node.attr in METHODS.get(type(value), ()):
            method = getattr(value, node.attr)

            def call(*args: Any, **kwargs: Any) -> Any:
                self._charge(value, *args, *kwargs.values())
                return method(*args, **kwargs)

            return call
        if isinstance(value, dict):
            if node.attr in value:
                return value[node.attr]
            raise KeyError(node.attr)
        raise simpleeval.FeatureNotAvailable(f"'.{node.attr}' is not available on {_kind(value)}")


_CONSTANT_TIME = frozenset({"len", "bool"})  # they do not look into their argument: free
_NO_OPERATORS = (ast.Pow, ast.BitAnd, ast.BitOr, ast.BitXor, ast.Invert, ast.LShift, ast.RShift)


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        raise ConditionFailed("`%` formatting is not available")
    return op.mod(a, b)


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
