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

from loopengt_core.model.expressions.conditions import (
    GATE_NAMES,
    STOP_NAMES,
    Condition,
    Dialect,
    compile_condition,
    dialect_of,
    jmespath_truthy,
)
from loopengt_core.model.expressions.errors import ConditionFailed, ExpressionError
from loopengt_core.model.expressions.sandbox import FUNCTIONS, METHODS

__all__ = [
    "FUNCTIONS",
    "GATE_NAMES",
    "METHODS",
    "STOP_NAMES",
    "Condition",
    "ConditionFailed",
    "Dialect",
    "ExpressionError",
    "compile_condition",
    "dialect_of",
    "jmespath_truthy",
]
