"""`loopengt doctor`: is this machine and this directory ready to run loops? One line per check, with a fix.

Checks only read: the file store check creates and removes one temp file, the PostgreSQL check connects
and reads the schema version without migrating anything, the workspace check records the files into a
throwaway index and object directory. Client configurations are looked for where
each editor reads them (the client records; Codex: `$CODEX_HOME/config.toml`, else `~/.codex`).

The checks by concern: `install.py`, `stores.py`, `clients.py`, `project.py`; `check.py` is the
line each gives. `run_checks` runs them all, in the order doctor prints them.
"""

from __future__ import annotations

from pathlib import Path

from loopengt_server.doctor.check import Check, Level
from loopengt_server.doctor.clients import check_clients
from loopengt_server.doctor.install import (
    check_gate_plugins,
    check_loopengt,
    check_mcp,
    check_plugins,
    check_prompts,
    check_python,
)
from loopengt_server.doctor.project import check_programs, check_workspace
from loopengt_server.doctor.stores import (
    check_corrupt_runs,
    check_file_store,
    check_plugin_store,
    check_postgres,
    check_store,
)

__all__ = [
    "Check",
    "Level",
    "check_clients",
    "check_corrupt_runs",
    "check_file_store",
    "check_gate_plugins",
    "check_loopengt",
    "check_mcp",
    "check_plugin_store",
    "check_plugins",
    "check_postgres",
    "check_programs",
    "check_prompts",
    "check_python",
    "check_store",
    "check_workspace",
    "run_checks",
]


def run_checks(store: str, *, project: Path | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    checks = [check_python(), check_loopengt(), check_mcp(), check_prompts(), *check_gate_plugins()]
    checks.append(check_store(store))
    corrupt = check_corrupt_runs(store)
    if corrupt is not None:
        checks.append(corrupt)
    checks.append(check_workspace(project or Path.cwd(), store))
    checks += check_plugins()
    client_checks, stores = check_clients(project or Path.cwd())
    checks += client_checks
    seen = {store}
    for name, url in stores:
        if url not in seen:
            seen.add(url)
            checks.append(check_postgres(url, name))
    return checks
