"""The import rules that keep the layers apart, read from the source (every import, also inside functions).

- The MCP server, the CLI and the hooks open a store with `loopengt_core.store.open_store` and hand it to
  the service (`Runs`, `RunReader`, `check`, `portability`, `retention`); they never use it themselves. No
  `loopengt_server` module imports a backend (`loopengt_core.store.files`, `.postgres`) or the database
  driver, takes more than `SERVER_STORE_NAMES` from the store package, or reaches into `Runs.store`, so a
  new backend or a change inside one touches no server code.
- The pure engine does no I/O: its modules import, directly or through other `loopengt_core` modules,
  none of the store, the service, the command runner, the git workspace, `subprocess` or `psycopg`.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "loopengt_core"
SERVER = ROOT / "loopengt_server"

BACKENDS = ("loopengt_core.store.files", "loopengt_core.store.postgres", "psycopg", "psycopg_pool")
# Server modules allowed to import a backend: none, since `loopengt_core.store.open_store` opens either.
BACKEND_IMPORTERS: frozenset[str] = frozenset()

# What the server may take from the store package: opening a store, checking an id, and the
# read-only probe and description of a location that `loopengt doctor` shows.
SERVER_STORE_NAMES = frozenset(
    {
        "open_store",
        "check_id",
        "is_database",
        "is_directory",
        "describe_location",
        "probe_database",
    }
)

PURE = (
    "spec",
    "validation",
    "events",
    "state",
    "engine",
    "patterns",
    "gates",
    "gatetypes",
    "speccheck",
    "render",
    "view",
    "expressions",
)
IO = (
    "loopengt_core.store",
    "loopengt_core.runs",
    "loopengt_core.commands",
    "loopengt_core.workspace",
    "subprocess",
    "psycopg",
    "psycopg_pool",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module the file imports; `from a import b` counts as `a` and, where `a.b` is a module, as that."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names if module_path(f"{module}.{a.name}"))
    return frozenset(found)


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def reachable(start: str) -> dict[str, str]:
    """Every module `start` imports directly or through loopengt_core modules, with who imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        path = module_path(current)
        if path is None:
            continue
        for name in imports_of(path):
            if name not in seen and name != start:
                seen[name] = current
                if name.startswith("loopengt_core"):
                    todo.append(name)
    return seen


def chain(start: str, target: str, via: dict[str, str]) -> str:
    links = [target]
    while links[-1] != start and links[-1] in via:
        links.append(via[links[-1]])
    return " <- ".join(links)


def test_no_server_module_imports_a_store_backend() -> None:
    found = [
        f"{module_name(path)} imports {name}"
        for path in sorted(SERVER.rglob("*.py"))
        if module_name(path) not in BACKEND_IMPORTERS
        for name in sorted(imports_of(path))
        if within(name, BACKENDS)
    ]
    assert found == []


def test_the_server_opens_stores_but_never_uses_one() -> None:
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "loopengt_core.store":
                found += [
                    f"{module_name(path)} imports {a.name} from loopengt_core.store"
                    for a in node.names
                    if a.name not in SERVER_STORE_NAMES
                ]
            elif isinstance(node, ast.Attribute) and node.attr == "store":
                found.append(
                    f"{module_name(path)}:{node.lineno} uses .store (read through Runs or RunReader)"
                )
    assert found == []


# The runs service's lock protocol: the server calls one method per tool (`service.async_submit.submit`
# for a step) and knows none of it (issue 21).
LOCK_PROTOCOL = frozenset({"LockBusy", "quick", "deferring", "settle", "synced", "recent_sync_seconds"})


def test_the_server_knows_no_lock_protocol() -> None:
    found = []
    for path in sorted([*SERVER.rglob("*.py"), *(ROOT / "loopengt").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = (
                [a.asname or a.name for a in node.names]
                if isinstance(node, ast.ImportFrom | ast.Import)
                else [node.attr]
                if isinstance(node, ast.Attribute)
                else [node.id]
                if isinstance(node, ast.Name)
                else []
            )
            found += [f"{module_name(path)}:{node.lineno} names {n}" for n in names if n in LOCK_PROTOCOL]
    assert found == []


def test_the_pure_engine_imports_no_io() -> None:
    found = []
    for short in PURE:
        start = f"loopengt_core.{short}"
        assert module_path(start) is not None, f"{start} moved: update PURE"
        via = reachable(start)
        found += [chain(start, name, via) for name in sorted(via) if within(name, IO)]
    assert found == []


def test_the_rules_see_imports() -> None:
    """The checks above would pass on a reader that finds nothing: they must find what is there."""
    assert "loopengt_core.store" in imports_of(CORE / "runs.py")
    assert within("loopengt_core.store.files", BACKENDS)
    assert "loopengt_core.store.files" in imports_of(CORE / "store" / "location.py")  # inside open_store
    assert "psycopg" in imports_of(CORE / "store" / "postgres" / "store.py")
    assert "loopengt_core.events" in reachable("loopengt_core.engine")
    assert "subprocess" in reachable("loopengt_core.runs")
