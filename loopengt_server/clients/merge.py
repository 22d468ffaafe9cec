"""Merging loopengt's entries into a client's files: the MCP server entry and the hooks.

Every file is merged, never replaced: other servers, hooks and keys stay as they were, a file that
already holds what we would write is not touched (so a second run changes nothing, byte for byte),
and an existing `loopengt` server entry that differs from ours (say, with `--store` added by hand) is
left alone unless `force` is given. A file that does not parse is never rewritten: the caller is told to
add the entry by hand and shown it. A file in the user's home is written only with consent (`write`);
without it the change says what to add.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loopengt_core.model.errors import InvalidArgument
from loopengt_server.clients.records import SERVER_NAME, ClientRecord, HookFile, Registration, snippet

Action = Literal["created", "updated", "unchanged", "kept", "skipped", "print"]
HOME_CONSENT = "a file in your home: pass --write-home to let init add it"


@dataclass(frozen=True)
class Change:
    """What `init` did (or would do) to one file."""

    path: Path
    action: Action
    note: str = ""
    snippet: str = ""


class ClientError(InvalidArgument):
    """A client file that cannot be merged safely (it does not parse, or has an unexpected shape)."""


def dump_json(data: Any) -> str:
    """JSON as the editor config files are written: indented, UTF-8 kept, a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist.

    Raises:
        ClientError: it exists but cannot be read as UTF-8 text.
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None


def write_file(path: Path, text: str, existed: bool, note: str) -> Change:
    """Replace the file atomically (a temporary file renamed over it), so an editor never reads half a config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.loopengt-tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
    return Change(path, "updated" if existed else "created", note)


def _load_json_object(path: Path, text: str | None, shown: str) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(
            f"{path} is not plain JSON ({exc.msg} at line {exc.lineno}; comments are not supported), "
            f"so it was left as it is; add this by hand:\n{shown}"
        ) from None
    if not isinstance(data, dict):
        raise ClientError(f"{path} does not hold a JSON object; left as it is; add this by hand:\n{shown}")
    return data


def _check_json(path: Path, data: dict[str, Any], holds: Callable[[dict[str, Any]], bool]) -> None:
    """What is about to be written parses back and holds both our entry and everything that was there."""
    again = json.loads(dump_json(data))
    if not holds(again):  # pragma: no cover - a guard against merge bugs, not a user error
        raise ClientError(f"{path}: merging would lose an entry; the file was left as it is")


def _same_server(existing: Any, wanted: dict[str, Any]) -> bool:
    """Our entry is there when every key we write has our value (keys added by hand, like env, may stay)."""
    return isinstance(existing, dict) and all(existing.get(k) == v for k, v in wanted.items())


def _settled(path: Path, existing: Any, wanted: dict[str, Any], force: bool, shown: str) -> Change | None:
    """No write needed: our entry is there already, or the user's own entry stays (unless --force)."""
    if _same_server(existing, wanted):
        return Change(path, "unchanged", f"server {SERVER_NAME!r} is configured")
    if existing is not None and not force:
        return Change(path, "kept", f"has another {shown}; left as it is (--force replaces it)")
    return None


def _beside(others: list[str]) -> str:
    return f"server {SERVER_NAME!r}" + (f" beside {', '.join(others)}" if others else "")


# --- the MCP server entry ---------------------------------------------------------------------------------


def merge_server(rec: ClientRecord, project: Path, *, write: bool, force: bool = False) -> Change:
    """Add the `loopengt` server to the client's MCP configuration, keeping everything else."""
    path = rec.mcp.place.path(project)
    if rec.mcp.format == "toml":
        return _merge_toml_server(path, rec, write=write, force=force)
    key, wanted = rec.mcp.key, rec.mcp.entry()
    text = read_text(path)
    data = _load_json_object(path, text, snippet(rec))
    servers = data.get(key)
    if servers is None:
        servers = {}
    elif not isinstance(servers, dict):
        raise ClientError(
            f"{path}: {key!r} is not an object; left as it is; add this by hand:\n{snippet(rec)}"
        )
    existing = servers.get(SERVER_NAME)
    settled = _settled(
        path, existing, wanted, force, f"{SERVER_NAME!r} server entry ({json.dumps(existing)})"
    )
    if settled is not None:
        return settled
    if rec.mcp.place.home is not None and not write:
        return Change(path, "print", HOME_CONSENT, snippet(rec))
    others = [name for name in servers if name != SERVER_NAME]
    merged = copy.deepcopy(data)
    merged.setdefault(key, {})[SERVER_NAME] = wanted
    _check_json(
        path, merged, lambda d: d[key][SERVER_NAME] == wanted and all(d[key][n] == servers[n] for n in others)
    )
    return write_file(path, dump_json(merged), text is not None, _beside(others))


def _merge_toml_server(path: Path, rec: ClientRecord, *, write: bool, force: bool) -> Change:
    """Add `[mcp_servers.loopengt]` to a TOML config (comments and formatting kept, via tomlkit)."""
    import tomlkit

    wanted, key, shown = rec.mcp.entry(), rec.mcp.key, snippet(rec)
    text = read_text(path)
    try:
        current = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise ClientError(
            f"{path} is not valid TOML ({exc}); left as it is; add this by hand:\n{shown}"
        ) from None
    servers = current.get(key, {})
    if not isinstance(servers, dict):
        raise ClientError(f"{path}: {key} is not a table; left as it is; add this by hand:\n{shown}")
    existing = servers.get(SERVER_NAME)
    settled = _settled(path, existing, wanted, force, f"[{key}.{SERVER_NAME}] ({existing})")
    if settled is not None:
        return settled
    if not write:
        return Change(path, "print", HOME_CONSENT, shown)
    doc = tomlkit.parse(text or "")
    table = doc.get(key)
    if table is None:
        table = tomlkit.table(is_super_table=True)
        doc.add(key, table)
    entry = tomlkit.table()
    for k, v in wanted.items():
        entry.add(k, v)
    if SERVER_NAME in table:
        del table[SERVER_NAME]
    table[SERVER_NAME] = entry
    out = tomlkit.dumps(doc)
    try:
        again = tomllib.loads(out)
    except tomllib.TOMLDecodeError:  # pragma: no cover - tomlkit produced something tomllib refuses
        again = {}
    others = {n: v for n, v in servers.items() if n != SERVER_NAME}
    merged = again.get(key, {})
    if merged.get(SERVER_NAME) != wanted or any(merged.get(n) != v for n, v in others.items()):
        raise ClientError(f"{path}: could not merge safely; left as it is; add this by hand:\n{shown}")
    return write_file(path, out, text is not None, _beside(list(others)))


# --- hooks ------------------------------------------------------------------------------------------------


def hook_entry(hooks: HookFile, reg: Registration) -> dict[str, Any]:
    """One registration as the client's file holds it."""
    if hooks.layout == "plain":
        return {"command": reg.command}
    command = {"type": "command", "command": reg.command}
    if hooks.layout == "typed":
        return command
    return {**({"matcher": reg.matcher} if reg.matcher else {}), "hooks": [command]}


def hook_snippet(hooks: HookFile) -> str:
    """The hooks file's content to paste by hand, when it cannot be merged into the existing one."""
    events: dict[str, list[dict[str, Any]]] = {}
    for reg in hooks.registrations:
        events.setdefault(reg.event, []).append(hook_entry(hooks, reg))
    return dump_json({**hooks.header, "hooks": events})


def _commands(hooks: HookFile, entries: list[Any]) -> list[str]:
    """Every command registered for one event, whatever the layout (groups hold a list of commands)."""
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        inner = entry.get("hooks") if hooks.layout == "groups" else [entry]
        for item in inner if isinstance(inner, list) else []:
            if isinstance(item, dict) and isinstance(item.get("command"), str):
                found.append(item["command"])
    return found


def is_ours(command: str, reg: Registration) -> bool:
    """`loopengt hook stop`, with a path or options added by hand, counts as registered."""
    verb = reg.command.split()[-1]
    return re.search(rf"(^|[\s/\\])loopengt(\.exe)?\s+hook\s+{verb}\b", command) is not None


def merge_hooks(rec: ClientRecord, project: Path, *, write: bool) -> Change:
    """Register `loopengt hook stop` and `loopengt hook session` in the client's hook file, keeping every other hook."""
    hooks = rec.hooks
    if hooks is None:
        raise InvalidArgument(f"{rec.title} has no hooks")
    path = hooks.place.path(project)
    shown = hook_snippet(hooks)
    text = read_text(path)
    data = _load_json_object(path, text, shown)
    table = data.get("hooks", {})
    if not isinstance(table, dict):
        raise ClientError(f"{path}: 'hooks' is not an object; left as it is; add this by hand:\n{shown}")
    missing = []
    for reg in hooks.registrations:
        entries = table.get(reg.event, [])
        if not isinstance(entries, list):
            raise ClientError(
                f"{path}: hooks.{reg.event} is not a list; left as it is; add this by hand:\n{shown}"
            )
        if not any(is_ours(c, reg) for c in _commands(hooks, entries)):
            missing.append(reg)
    events = ", ".join(r.event for r in hooks.registrations)
    if not missing:
        return Change(path, "unchanged", f"hooks {events} are registered")
    if hooks.place.home is not None and not write:
        return Change(path, "print", HOME_CONSENT, shown)
    merged = copy.deepcopy(data)
    for k, v in hooks.header.items():
        merged.setdefault(k, v)
    for reg in missing:
        merged.setdefault("hooks", {}).setdefault(reg.event, []).append(hook_entry(hooks, reg))
    _check_json(
        path,
        merged,
        lambda d: all(d["hooks"].get(e, [])[: len(v)] == v for e, v in table.items() if isinstance(v, list)),
    )
    note = f"hooks {', '.join(r.event for r in missing)}" + (" beside others" if table else "")
    return write_file(path, dump_json(merged), text is not None, note)


def registered_hooks(rec: ClientRecord, project: Path) -> list[Registration] | None:
    """Which of our registrations the client's hook file holds; None when there is no such file to read."""
    if rec.hooks is None:
        return None
    path = rec.hooks.place.path(project)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    table = data.get("hooks") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        return []
    return [
        reg
        for reg in rec.hooks.registrations
        if isinstance(table.get(reg.event), list)
        and any(is_ours(c, reg) for c in _commands(rec.hooks, table[reg.event]))
    ]
