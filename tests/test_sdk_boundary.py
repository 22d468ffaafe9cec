"""The SDK's private attributes are reached in one module, loopengt_server/mcp/sdk.py, which says why.

Two checks: the attributes known to be reached today (a plain text search, so a new use is found even
where the SDK's own source is not installed), and every private name the installed `mcp` and `mcp_types`
packages define (functions, classes, attributes assigned anywhere in their source): no module but sdk.py
reads one as `obj._name` or `getattr(obj, "_name")`, or imports a private module or name of the SDK.
Private names loopengt defines itself (`_lock`, `_store`, ...) are left out: there the object is ours.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import mcp
import mcp_types

PRIVATE = re.compile(r"\.(_lowlevel_server|_tool_manager|_resource_manager|_prompt_manager|_connection)\b")
ROOT = Path(__file__).parents[1]
PACKAGES = [ROOT / "loopengt_server", ROOT / "loopengt_core"]
ADAPTER = ROOT / "loopengt_server" / "mcp" / "sdk.py"
SDK_ROOTS = ("mcp", "mcp_types")


def our_modules() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            if path != ADAPTER:
                yield path


def private_names(folders: list[Path]) -> set[str]:
    """Single-underscore names the code in `folders` defines (def, class, assignment, attribute store)."""
    found: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = None
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = node.name
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    name = node.attr
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    name = node.id
                if name and name.startswith("_") and not name.startswith("__"):
                    found.add(name)
    return found


@cache
def sdk_private() -> frozenset[str]:
    sdk = private_names([Path(mcp.__file__).parent, Path(mcp_types.__file__).parent])
    return frozenset(sdk - private_names(PACKAGES))


def sdk_reaches(path: Path) -> Iterator[str]:
    """Where a module reads a private SDK attribute or imports a private SDK module or name."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr in sdk_private():
            yield f"{where}: .{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in sdk_private()
        ):
            yield f"{where}: {node.func.id}(..., {node.args[1].value!r})"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in SDK_ROOTS:
            parts = (node.module or "").split(".") + [alias.name for alias in node.names]
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                yield f"{where}: from {node.module} import {', '.join(a.name for a in node.names)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in SDK_ROOTS and any(p.startswith("_") for p in parts):
                    yield f"{where}: import {alias.name}"


def test_only_the_sdk_adapter_reaches_into_the_sdk() -> None:
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in our_modules()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if PRIVATE.search(line)
    ]
    assert found == []


def test_no_module_but_the_adapter_reads_a_private_name_of_the_sdk() -> None:
    assert "_lowlevel_server" in sdk_private()  # the check sees the SDK's own private names
    found = [reach for path in our_modules() for reach in sdk_reaches(path)]
    assert found == [], "private SDK names outside loopengt_server/mcp/sdk.py:\n" + "\n".join(found)


def test_the_adapter_says_why_for_each_private_name_it_reads() -> None:
    """Every private SDK name sdk.py reads is named in its module docstring's reasons."""
    reasons = ast.get_docstring(ast.parse(ADAPTER.read_text(encoding="utf-8"))) or ""
    used = {reach.rsplit(".", 1)[-1] for reach in sdk_reaches(ADAPTER) if ": ." in reach}
    assert used, "sdk.py reads no private SDK name: the adapter (and this test) can go"
    missing = sorted(name for name in used if name not in reasons)
    assert missing == [], f"sdk.py reads {missing} without saying why in its docstring"
