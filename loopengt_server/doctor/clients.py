"""Do the editors find loopengt: each client's MCP configuration and hooks, read where the editor reads them."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopengt_core.store import describe_location, is_database
from loopengt_server.doctor.check import Check, Level

if TYPE_CHECKING:
    from loopengt_server.clients.records import ClientRecord


def _mentions(entry: Any) -> bool:
    return "loopengt" in json.dumps(entry, default=str)


def _store_urls(entry: Any) -> list[str]:
    """postgresql:// stores named in a server entry's args (`--store URL` or `--store=URL`)."""
    args = entry.get("args") if isinstance(entry, dict) else None
    if not isinstance(args, list):
        return []
    urls = []
    for i, arg in enumerate(args):
        value = None
        if arg == "--store" and i + 1 < len(args):
            value = args[i + 1]
        elif isinstance(arg, str) and arg.startswith("--store="):
            value = arg.split("=", 1)[1]
        if isinstance(value, str) and is_database(value):
            urls.append(value)
    return urls


def _redacted(arg: str) -> str:
    """An argument as shown: a PostgreSQL URL without its password."""
    head, sep, url = arg.partition("=") if arg.startswith("--store=") else ("", "", arg)
    return head + sep + describe_location(url)


def _command_check(client: str, shown: str, name: str, entry: dict[str, Any]) -> Check:
    command = entry.get("command")
    if entry.get("url") or entry.get("type") in ("http", "sse", "streamable-http"):
        return Check("OK", client, f"{shown}: server {name!r} over HTTP at {entry.get('url')}")
    if not isinstance(command, str):
        return Check(
            "WARN", client, f"{shown}: server {name!r} has no command", f"loopengt init --client {client}"
        )
    resolved = shutil.which(command) or (command if Path(command).is_file() else None)
    args = " ".join(_redacted(str(a)) for a in entry.get("args") or [])
    if resolved is None:
        return Check(
            "WARN",
            client,
            f"{shown}: server {name!r} runs {command!r}, which is not on PATH here",
            f"start the editor with the venv active, or set command to {Path(sys.prefix) / 'bin' / 'loopengt'}",
        )
    return Check("OK", client, f"{shown}: server {name!r} runs `{command} {args}`".rstrip())


def _load_config(toml: bool, path: Path) -> tuple[dict[str, Any] | None, str]:
    """(parsed config, '') or (None, why it does not parse)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    try:
        data = tomllib.loads(text) if toml else json.loads(text or "{}")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        return None, f"does not parse ({exc})"
    if not isinstance(data, dict):
        return None, "does not hold an object"
    return data, ""


def _hooks_check(rec: ClientRecord, project: Path) -> Check | None:
    """Both hooks registered (OK), only one (WARN), or none of ours: nothing to say (hooks are optional)."""
    from loopengt_server.clients.merge import registered_hooks

    found = registered_hooks(rec, project)
    if not found or rec.hooks is None:
        return None
    shown = rec.hooks.place.shown
    missing = [r.command for r in rec.hooks.registrations if r not in found]
    if missing:
        return Check(
            "WARN",
            rec.name,
            f"{shown}: `{', '.join(missing)}` not registered",
            f"loopengt init --client {rec.name} --stop-hook",
        )
    return Check("OK", rec.name, f"{shown}: hooks {', '.join(r.event for r in found)} registered")


def check_clients(project: Path) -> tuple[list[Check], list[tuple[str, str]]]:
    """One line per client config found here, and the postgresql:// stores those configs name."""
    checks: list[Check] = []
    stores: list[tuple[str, str]] = []
    from loopengt_server.clients.records import all_records

    for rec in all_records():
        client, key = rec.name, rec.mcp.key
        path = rec.mcp.place.path(project)
        shown = rec.mcp.place.relative if rec.mcp.place.home is None else str(path)
        if not path.is_file():
            continue
        data, problem = _load_config(rec.mcp.format == "toml", path)
        if data is None:
            # VS Code reads JSON with comments, which json refuses: only a warning there.
            level: Level = "WARN" if client == "vscode" else "FAIL"
            checks.append(
                Check(level, client, f"{shown} {problem}", "fix the syntax: the editor skips a broken file")
            )
            continue
        servers = data.get(key)
        ours = (
            {n: e for n, e in servers.items() if isinstance(e, dict) and (n == "loopengt" or _mentions(e))}
            if isinstance(servers, dict)
            else {}
        )
        if not ours:
            checks.append(
                Check("WARN", client, f"{shown} has no loopengt server", f"loopengt init --client {client}")
            )
            continue
        for name, entry in ours.items():
            checks.append(_command_check(client, shown, name, entry))
            stores.extend((f"{client} store", url) for url in _store_urls(entry))
        hooks = _hooks_check(rec, project)
        if hooks is not None:
            checks.append(hooks)
    if not any(c.level == "OK" for c in checks):
        checks.append(
            Check(
                "WARN",
                "clients",
                f"no editor in {project} is configured to start loopengt",
                "loopengt init --client NAME (claude-code, cursor, vscode, codex, antigravity)",
            )
        )
    return checks, stores
