"""Conditions: the expressions of gates (`condition`) and stop conditions (`goal_met`, `custom`).

Two dialects, both evaluated without Python's `eval`:

- JMESPath (`output.score != null`, ``length(output.summary) > `0` ``), the dialect of loopengt's
  docs and templates, with JMESPath truthiness (false for null, false, "", [] and {}; 0 is true).
- Python-style (`len(output['summary']) > 0`, `output['score'] >= 0.8 and output.get('approved')`),
  the form loopengt 0.1.0 specs used, with Python truthiness. It is evaluated by `simpleeval`
  over the parsed syntax tree, in a sandbox: only the scope's names, the functions in `FUNCTIONS`,
  the methods in `METHODS`, no name or attribute starting with `_`, no lambda, f-string, `**`,
  `%` formatting, walrus or import; and limits (MAX_STEPS, MAX_WORK, MAX_ITEMS, MAX_SECONDS, and
  simpleeval's 10,000 elements per comprehension) so that no condition can run long or fill memory.

Which dialect a condition is, is decided from its text alone, the same way at validation and at
run time (`compile_condition`; the README documents the rule):

1. JMESPath when it compiles as JMESPath, calls only JMESPath functions with the right number of
   arguments, and reads at its top level only the scope's names (`output`, `context`, ...).
2. Otherwise Python-style when it parses as a Python expression the sandbox accepts.
3. Otherwise JMESPath when it compiles as JMESPath and calls only JMESPath functions: an unknown
   top-level name (`null`, or the `true` that 0.1.0's generator wrote) is a field that is absent,
   so it reads as null, as it always has.
4. Otherwise it is a validation error naming what is wrong in both readings.

So every condition that was valid JMESPath keeps its meaning, except ones that only make sense as
Python, such as `output.passed == True` (JMESPath reads `True` as a missing field).
"""

from __future__ import annotations

import ast
import operator as op
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import jmespath
import simpleeval
from jmespath.exceptions import JMESPathError
from jmespath.functions import Functions

GATE_NAMES: tuple[str, ...] = ("output", "context", "steps", "attempt")
STOP_NAMES: tuple[str, ...] = ("output", "context", "steps")

Dialect = Literal["jmespath", "python"]

# --- the Python-style sandbox ------------------------------------------------------------------

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

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot,
    ast.IfExp, ast.Call, ast.keyword, ast.Subscript, ast.Slice, ast.Attribute, ast.Name, ast.Load,
    ast.Store, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.GeneratorExp,
    ast.comprehension,
)  # fmt: skip
_NODE_WORDS = {
    "Pow": "`**`",
    "BitAnd": "`&`",
    "BitOr": "`|` (use `or`)",
    "BitXor": "`^`",
    "Invert": "`~`",
    "LShift": "`<<`",
    "RShift": "`>>`",
    "MatMult": "`@`",
    "Lambda": "lambda",
    "NamedExpr": "`:=`",
    "JoinedStr": "f-strings",
    "FormattedValue": "f-strings",
    "Starred": "`*` unpacking",
    "DictComp": "dict comprehensions",
    "SetComp": "set comprehensions",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
}


class ExpressionError(ValueError):
    """A condition that cannot be evaluated in either dialect (a validation error)."""


class ConditionFailed(Exception):
    """Evaluating a valid condition failed on this data (a missing key, a wrong type, a limit)."""


def _refuse(message: str) -> ExpressionError:
    return ExpressionError(message)


def _check_python(tree: ast.Expression, names: tuple[str, ...]) -> None:
    """Refuse anything the sandbox does not allow, naming the most telling reason.

    Reasons rank: a name reaching into Python's internals (`_...`), then syntax the sandbox lacks,
    then unknown names and functions, then methods and the rest; the first of the best rank wins.
    """
    bound = {
        n.id
        for comp in ast.walk(tree)
        if isinstance(comp, ast.comprehension)
        for n in ast.walk(comp.target)
        if isinstance(n, ast.Name)
    }
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        kind = type(node).__name__
        word = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if word.startswith("_"):
            found.append((0, f"'{word}' is not allowed (no name or attribute may start with '_')"))
        elif not isinstance(node, _ALLOWED_NODES):
            found.append((1, f"{_NODE_WORDS.get(kind, kind)} cannot be used"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in names and node.id not in FUNCTIONS and node.id not in bound:
                what = "a function" if id(node) in called else "a name"
                found.append(
                    (
                        2,
                        f"'{node.id}' is not {what} here (names: {', '.join(names)}; functions: {', '.join(FUNCTIONS)})",
                    )
                )
        elif isinstance(node, ast.Attribute):
            if id(node) in called and node.attr not in ALL_METHODS:
                found.append(
                    (3, f"method '{node.attr}()' is not allowed (methods: {', '.join(sorted(ALL_METHODS))})")
                )
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in names:
                found.append((2, f"'{node.func.id}' is not a function (functions: {', '.join(FUNCTIONS)})"))
            elif not isinstance(node.func, ast.Name | ast.Attribute):
                found.append((1, "only named functions and methods can be called"))
            if any(k.arg is None for k in node.keywords):
                found.append((1, "`**` arguments cannot be used"))
        elif isinstance(node, ast.Dict) and any(k is None for k in node.keys):
            found.append((1, "`**` in a dict cannot be used"))
        elif isinstance(node, ast.comprehension) and node.is_async:
            found.append((1, "async comprehensions cannot be used"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str | bytes)
            and len(node.value) > MAX_ITEMS
        ):
            found.append((3, f"a literal longer than {MAX_ITEMS} characters is not allowed"))
    if found:
        raise _refuse(min(found, key=lambda f: f[0])[1])


def _parse_python(text: str, names: tuple[str, ...]) -> tuple[ast.expr | None, str, bool]:
    """(the expression, "") if the sandbox accepts `text`; else (None, the reason, parsed?)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        return None, f"{exc.msg}{where}", False
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, " ".join(str(exc).split()) or type(exc).__name__, False
    try:
        _check_python(tree, names)
    except ExpressionError as exc:
        return None, str(exc), True
    return tree.body, "", True


class _Sandbox(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval has no type hints
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


# --- JMESPath ----------------------------------------------------------------------------------

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
class _JMESPath:
    compiled: Any  # None when not usable
    reason: str  # why not usable
    parsed: bool  # it compiles (but may call what JMESPath does not have)
    clean: bool  # it reads only the scope's names at its top level


def _parse_jmespath(text: str, names: tuple[str, ...]) -> _JMESPath:
    try:
        compiled = jmespath.compile(text)
    except JMESPathError as exc:
        return _JMESPath(None, " ".join(str(exc).split()), False, False)
    except (ValueError, RecursionError) as exc:  # the lexer and parser are not fuzz-hardened
        return _JMESPath(None, " ".join(str(exc).split()) or type(exc).__name__, False, False)
    clean = True
    for kind, name, count in _jp_walk(compiled.parsed, True):
        if kind == "function":
            problem = _jp_function_problem(name, count)
            if problem is not None:
                return _JMESPath(None, problem, True, False)
        elif name not in names:
            clean = False
    return _JMESPath(compiled, "", True, clean)


# --- conditions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A condition compiled in its dialect; `holds(scope)` answers it."""

    text: str
    dialect: Dialect
    compiled: Any

    def value(self, scope: Mapping[str, Any]) -> Any:
        """The expression's value over `scope`. Raises ConditionFailed when it cannot be computed."""
        if self.dialect == "jmespath":
            try:
                return self.compiled.search(dict(scope))
            except Exception as exc:  # noqa: BLE001 - JMESPathError, or a type error in a function on this data
                raise ConditionFailed(" ".join(str(exc).split()) or type(exc).__name__) from None
        sandbox = _Sandbox(scope)
        try:
            return sandbox.eval(self.text, previously_parsed=self.compiled)
        except ConditionFailed:
            raise
        except KeyError as exc:
            raise ConditionFailed(f"no key {exc.args[0]!r}" if exc.args else "no such key") from None
        except IndexError:
            raise ConditionFailed("list index out of range") from None
        except simpleeval.InvalidExpression as exc:
            raise ConditionFailed(" ".join(str(exc).split())) from None
        except (RecursionError, MemoryError):
            raise ConditionFailed("too deeply nested or too large") from None
        except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, ZeroDivisionError, ... on this data
            raise ConditionFailed(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None

    def holds(self, scope: Mapping[str, Any]) -> bool:
        """Truthiness in the condition's own dialect. Raises ConditionFailed."""
        result = self.value(scope)
        if self.dialect == "jmespath":
            return jmespath_truthy(result)
        return bool(result)


def jmespath_truthy(value: Any) -> bool:
    """JMESPath truthiness: false for null, false, empty string, list or object; true otherwise (0 too)."""
    return value not in (None, False, "", [], {}) or (value == 0 and not isinstance(value, bool))


@lru_cache(maxsize=1024)
def compile_condition(text: str, names: tuple[str, ...] = GATE_NAMES) -> Condition:
    """The condition `text` in its dialect (see the module's docstring). Raises ExpressionError."""
    if not text.strip():
        raise ExpressionError("empty expression")
    jp = _parse_jmespath(text, names)
    if jp.compiled is not None and jp.clean:
        return Condition(text, "jmespath", jp.compiled)
    py, py_reason, py_parsed = _parse_python(text, names)
    if py is not None:
        return Condition(text, "python", py)
    if jp.compiled is not None:
        return Condition(text, "jmespath", jp.compiled)
    if py_parsed and jp.parsed:
        raise ExpressionError(
            f"cannot evaluate {text!r}: as JMESPath, {jp.reason}; as a Python-style expression, {py_reason}"
        )
    if py_parsed:
        raise ExpressionError(f"cannot evaluate {text!r} (a Python-style expression): {py_reason}")
    raise ExpressionError(
        f"invalid JMESPath {text!r}: {jp.reason}; not a Python-style expression either: {py_reason}"
    )


def dialect_of(text: str, names: tuple[str, ...] = GATE_NAMES) -> Dialect:
    """Which dialect `text` is read in. Raises ExpressionError."""
    return compile_condition(text, names).dialect
