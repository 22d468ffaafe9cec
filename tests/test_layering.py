"""The import rules that keep the layers apart, read from the source (every import, also inside functions).

- The MCP server, the CLI and the hooks open a store with `loopengt_core.store.open_store` and hand it to
  the service (`Runs`, `RunReader`, `check`, `portability`, `retention`); they never use it themselves. No
  `loopengt_server` module imports a backend (`loopengt_core.store.files`, `.postgres`) or the database
  driver, takes more than `SERVER_STORE_NAMES` from the store package, or reaches into `Runs.store`, so a
  new backend or a change inside one touches no server code.
- The folders are the layers. `loopengt_core.model` (the spec, events, state: data) imports only itself;
  `loopengt_core.engine` (the decisions) only the model and itself; `loopengt_core.store` only the model
  and itself; `loopengt_core.service` (the I/O: runs, commands, git, telemetry) any of them;
  `loopengt_core` nothing of `loopengt_server`. In `loopengt_server`, `mcp/` is the protocol layer, `cli/`,
  `headless/`, `hooks/`, `doctor/`, `ui/` the other faces, `present/` and `clients/` what they share.
- The model and the engine do no I/O: they import, directly or through other `loopengt_core` modules,
  none of the store, the service, `subprocess`, sockets, `psycopg`, files' helpers, and call no `open`.
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

PURE = ("loopengt_core.model", "loopengt_core.engine")
IO = (
    "loopengt_core.store",
    "loopengt_core.service",
    "subprocess",
    "socket",
    "shutil",
    "tempfile",
    "fcntl",
    "sqlite3",
    "psycopg",
    "psycopg_pool",
    "anyio",
    "asyncio",
)
FILE_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes", "fsync", "unlink"})

# What each folder may import of loopengt's own (besides itself).
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "loopengt_core.model": (),
    "loopengt_core.engine": ("loopengt_core.model",),
    "loopengt_core.store": ("loopengt_core.model",),
    "loopengt_core.service": ("loopengt_core.model", "loopengt_core.engine", "loopengt_core.store"),
    "loopengt_server.present": ("loopengt_core",),
    "loopengt_server.clients": ("loopengt_core", "loopengt_server.mcp"),
    "loopengt_server.mcp": ("loopengt_core", "loopengt_server.ui"),
    "loopengt_server.ui": ("loopengt_core", "loopengt_server.mcp", "loopengt_server.present"),
    "loopengt_server.headless": ("loopengt_core", "loopengt_server.present"),
    "loopengt_server.hooks": ("loopengt_core", "loopengt_server.mcp", "loopengt_server.clients"),
    "loopengt_server.doctor": ("loopengt_core", "loopengt_server.mcp", "loopengt_server.clients"),
    "loopengt_server.cli": ("loopengt_core", "loopengt_server"),
}
# The one import against a folder's rule: the gate-type registry (model: spec parsing asks it which keys
# are gate types) fills itself, on its first lookup, with the built-in gate types, which are engine code.
EXCEPTIONS = frozenset(
    {
        ("loopengt_core.model.gatetypes", "loopengt_core.engine.gates"),
        ("loopengt_core.model.gatetypes", "loopengt_core.engine.speccheck"),
    }
)
# Modules outside the folders: the packages' own `__init__` and `python -m loopengt_server`.
LOOSE = frozenset({"loopengt_core", "loopengt_server", "loopengt_server.__main__"})


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


def folder_of(name: str) -> str | None:
    return next((f for f in MAY_IMPORT if within(name, (f,))), None)


def test_every_module_lives_in_a_layer() -> None:
    loose = [
        module_name(path)
        for path in sorted([*CORE.rglob("*.py"), *SERVER.rglob("*.py")])
        if folder_of(module_name(path)) is None and module_name(path) not in LOOSE
    ]
    assert loose == [], "put each module in a folder of MAY_IMPORT (or add a folder with its rules)"


def test_each_folder_imports_only_what_its_layer_may() -> None:
    found = []
    for path in sorted([*CORE.rglob("*.py"), *SERVER.rglob("*.py")]):
        folder = folder_of(module_name(path))
        if folder is None:
            continue
        allowed = (folder, *MAY_IMPORT[folder])
        found += [
            f"{module_name(path)} ({folder}) imports {name}"
            for name in sorted(imports_of(path))
            if name.startswith("loopengt") and name not in LOOSE and not within(name, allowed)
            if (module_name(path), name) not in EXCEPTIONS
        ]
    assert found == []


def test_the_model_and_the_engine_do_no_io() -> None:
    found = []
    for path in sorted(p for f in PURE for p in ROOT.joinpath(*f.split(".")).rglob("*.py")):
        start = module_name(path)
        via = reachable(start)
        found += [chain(start, name, via) for name in sorted(via) if within(name, IO)]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                called = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                if called in FILE_CALLS:
                    found.append(f"{start}:{node.lineno} calls {called}")
    assert found == []


def test_the_rules_see_imports() -> None:
    """The checks above would pass on a reader that finds nothing: they must find what is there."""
    assert "loopengt_core.store" in imports_of(CORE / "service" / "runs.py")
    assert within("loopengt_core.store.files", BACKENDS)
    assert "loopengt_core.store.files" in imports_of(CORE / "store" / "location.py")  # inside open_store
    assert "psycopg" in imports_of(CORE / "store" / "postgres" / "store.py")
    assert "loopengt_core.model.events" in reachable("loopengt_core.engine")
    assert "subprocess" in reachable("loopengt_core.service.runs")
    assert folder_of("loopengt_core.engine.view") == "loopengt_core.engine"
    assert folder_of("loopengt_core.engineering") is None
