"""`loopengt init --client ...`: each editor's MCP configuration, slash commands and hooks, from its record.

`records.py` holds what each client needs (one record per client; `init`, `hook`, `doctor` and the
README table read it), `merge.py` merges entries into the client's files, `commands.py` writes the
packaged prompts as slash commands. The server runs as plain `loopengt serve` (found on PATH), so the
files can be committed and shared; `init` warns when `loopengt` is not on PATH.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from loopengt_server.clients.commands import install_slash_commands, slash_command_text
from loopengt_server.clients.merge import Change, ClientError, merge_hooks, merge_server
from loopengt_server.clients.records import (
    CLIENTS,
    HOOK_CLIENTS,
    RECORDS,
    SERVER_COMMAND,
    ClientRecord,
    all_records,
    client_names,
    codex_home,
    detect,
    hook_client_names,
    readme_table,
    record,
)

__all__ = [
    "CLIENTS",
    "HOOK_CLIENTS",
    "RECORDS",
    "Change",
    "ClientError",
    "ClientRecord",
    "all_records",
    "client_names",
    "codex_home",
    "detect",
    "hook_client_names",
    "init_client",
    "install_slash_commands",
    "loopengt_on_path",
    "readme_table",
    "record",
    "slash_command_text",
]


def init_client(
    client: str, project: Path, *, hooks: bool = False, write_home: bool = False, force: bool = False
) -> list[Change]:
    """Configure one client in `project`; returns what happened to each file.

    `hooks`: also register `loopengt hook stop` and `loopengt hook session` where the client has hooks.
    `write_home`: consent to change files in the user's home (Codex, Antigravity).
    """
    rec = record(client)
    changes = [merge_server(rec, project, write=write_home, force=force)]
    changes += install_slash_commands(client, project, force=force)
    if hooks and rec.hooks is not None:
        changes.append(merge_hooks(rec, project, write=write_home))
    return changes


def loopengt_on_path() -> str | None:
    """Where the `loopengt` program is found on PATH (what editors' configs start); None when it is not."""
    return shutil.which(SERVER_COMMAND)
