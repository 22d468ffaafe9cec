"""Reading a Python-style condition: parse it and refuse, with the most telling reason, anything the
sandbox does not allow (before it is ever evaluated)."""

from __future__ import annotations

import ast

from loopengt_core.model.expressions.errors import ExpressionError
from loopengt_core.model.expressions.sandbox import ALL_METHODS, FUNCTIONS, MAX_ITEMS

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


def parse_python(text: str, names: tuple[str, ...]) -> tuple[ast.expr | None, str, bool]:
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
