"""Compiling a condition in its dialect (the rule is in `loopengt_core.model.expressions`) and answering it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import simpleeval

from loopengt_core.model.expressions.errors import ConditionFailed, ExpressionError
from loopengt_core.model.expressions.jmes import parse_jmespath
from loopengt_core.model.expressions.pysyntax import parse_python
from loopengt_core.model.expressions.sandbox import Sandbox

GATE_NAMES: tuple[str, ...] = ("output", "context", "steps", "attempt")
STOP_NAMES: tuple[str, ...] = ("output", "context", "steps")

Dialect = Literal["jmespath", "python"]


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
        sandbox = Sandbox(scope)
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
    jp = parse_jmespath(text, names)
    if jp.compiled is not None and jp.clean:
        return Condition(text, "jmespath", jp.compiled)
    py, py_reason, py_parsed = parse_python(text, names)
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
