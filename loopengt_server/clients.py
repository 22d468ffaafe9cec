"""`loopengt init --client ...`: the MCP configuration, slash commands and stop hook of each editor.

Every file is merged, never replaced: other servers, hooks and keys stay as they were, a file that
already holds what we would write is not touched (so a second run changes nothing, byte for byte),
and an existing `loopengt` entry that differs from ours (say, with `--store` added by hand) is left
alone unless `force` is given. A file that does not parse is never rewritten: the caller is told to
add the entry by hand and shown it.

| client | MCP server | slash commands | stop hook |
| --- | --- | --- | --- |
| claude-code | `.mcp.json` (`mcpServers`) | `.claude/commands/NAME.md` | `.claude/settings.json` hooks.Stop |
| cursor | `.cursor/mcp.json` (`mcpServers`) | `.cursor/commands/NAME.md` | `.cursor/hooks.json` hooks.stop |
| vscode | `.vscode/mcp.json` (`servers`, type stdio) | (served as MCP prompts) | — |
| codex | `$CODEX_HOME/config.toml` (`~/.codex`), `[mcp_servers.loopengt]`, only with consent | — | — |

The server runs as plain `loopengt serve` (found on PATH), so the files can be committed and shared;
`init` warns when `loopengt` is not on PATH.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loopengt_core.errors import InvalidArgument

CLIENTS = ("claude-code", "cursor", "vscode", "codex")
HOOK_CLIENTS = ("claude-code", "cursor")
SERVER_NAME = "loopengt"
SERVER_COMMAND = "loopengt"
SERVER_ARGS = ["serve"]
HOOK_COMMAND = "loopengt hook stop"

Action = Literal["created", "updated", "unchanged", "kept", "skipped", "print"]


@dataclass(frozen=True)
class Change:
    """What `init` did (or would do) to one file."""

    path: Path
    action: Action
    note: str = ""
    snippet: str = ""


class ClientError(InvalidArgument):
    """A client file that cannot be merged safely (it does not parse, or has an unexpected shape)."""


# --- what each client gets ------------------------------------------------------------------------------


def server_entry(client: str) -> dict[str, Any]:
    """The `loopengt` entry of the client's MCP configuration."""
    entry: dict[str, Any] = {"command": SERVER_COMMAND, "args": list(SERVER_ARGS)}
    if client == "vscode":
        return {"type": "stdio", **entry}
    return entry


def servers_key(client: str) -> str:
    return "servers" if client == "vscode" else "mcpServers"


def codex_home() -> Path:
    """Codex's home: `$CODEX_HOME`, else `~/.codex`."""
    configured = os.environ.get("CODEX_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".codex"


def mcp_config_path(client: str, project: Path) -> Path:
    if client == "claude-code":
        return project / ".mcp.json"
    if client == "cursor":
        return project / ".cursor" / "mcp.json"
    if client == "vscode":
        return project / ".vscode" / "mcp.json"
    if client == "codex":
        return codex_home() / "config.toml"
    raise InvalidArgument(f"unknown client {client!r}; use one of {', '.join(CLIENTS)}")


def commands_dir(client: str, project: Path) -> Path | None:
    if client == "claude-code":
        return project / ".claude" / "commands"
    if client == "cursor":
        return project / ".cursor" / "commands"
    return None


def hook_config_path(client: str, project: Path) -> Path | None:
    if client == "claude-code":
        return project / ".claude" / "settings.json"
    if client == "cursor":
        return project / ".cursor" / "hooks.json"
    return None


def codex_snippet() -> str:
    args = ", ".join(json.dumps(a) for a in SERVER_ARGS)
    return f'[mcp_servers.{SERVER_NAME}]\ncommand = "{SERVER_COMMAND}"\nargs = [{args}]\n'


def json_snippet(client: str) -> str:
    return _dump_json({servers_key(client): {SERVER_NAME: server_entry(client)}})


def hook_snippet(client: str) -> str:
    if client == "claude-code":
        return _dump_json({"hooks": {"Stop": [_claude_hook_group()]}})
    return _dump_json({"version": 1, "hooks": {"stop": [{"command": HOOK_COMMAND}]}})


def _claude_hook_group() -> dict[str, Any]:
    return {"hooks": [{"type": "command", "command": HOOK_COMMAND}]}


# --- merging --------------------------------------------------------------------------------------------


def _dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None


def _load_json_object(path: Path, text: str | None, snippet: str) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(
            f"{path} is not plain JSON ({exc.msg} at line {exc.lineno}; comments are not supported), "
            f"so it was left as it is; add this by hand:\n{snippet}"
        ) from None
    if not isinstance(data, dict):
        raise ClientError(f"{path} does not hold a JSON object; left as it is; add this by hand:\n{snippet}")
    return data


def _same_server(existing: Any, wanted: dict[str, Any]) -> bool:
    """Our entry is there when every key we write has our value (keys added by hand, like env, may stay)."""
    return isinstance(existing, dict) and all(existing.get(k) == v for k, v in wanted.items())


def _write(path: Path, text: str, existed: bool, note: str) -> Change:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.loopengt-tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
    return Change(path, "updated" if existed else "created", note)


def merge_json_server(path: Path, client: str, *, force: bool = False) -> Change:
    """Add the `loopengt` server to a client's JSON MCP configuration, keeping everything else."""
    key, wanted = servers_key(client), server_entry(client)
    text = _read_text(path)
    data = _load_json_object(path, text, json_snippet(client))
    servers = data.get(key)
    if servers is None:
        servers = {}
    elif not isinstance(servers, dict):
        raise ClientError(
            f"{path}: {key!r} is not an object; left as it is; add this by hand:\n{json_snippet(client)}"
        )
    existing = servers.get(SERVER_NAME)
    settled = _settled(
        path, existing, wanted, force, f"{SERVER_NAME!r} server entry ({json.dumps(existing)})"
    )
    if settled is not None:
        return settled
    others = [name for name in servers if name != SERVER_NAME]
    merged = copy.deepcopy(data)
    merged.setdefault(key, {})[SERVER_NAME] = wanted
    _check_json(
        path, merged, lambda d: d[key][SERVER_NAME] == wanted and all(d[key][n] == servers[n] for n in others)
    )
    note = f"server {SERVER_NAME!r}" + (f" beside {', '.join(others)}" if others else "")
    return _write(path, _dump_json(merged), text is not None, note)


def _settled(path: Path, existing: Any, wanted: dict[str, Any], force: bool, shown: str) -> Change | None:
    """No write needed: our entry is there already, or the user's own entry stays (unless --force)."""
    if _same_server(existing, wanted):
        return Change(path, "unchanged", f"server {SERVER_NAME!r} is configured")
    if existing is not None and not force:
        return Change(path, "kept", f"has another {shown}; left as it is (--force replaces it)")
    return None


def _check_json(path: Path, data: dict[str, Any], holds: Callable[[dict[str, Any]], bool]) -> None:
    """What is about to be written parses back and holds both our entry and everything that was there."""
    again = json.loads(_dump_json(data))
    if not holds(again):  # pragma: no cover - a guard against merge bugs, not a user error
        raise ClientError(f"{path}: merging would lose an entry; the file was left as it is")


def merge_codex_server(path: Path, *, write: bool, force: bool = False) -> Change:
    """Add `[mcp_servers.loopengt]` to Codex's config.toml (comments and formatting kept, via tomlkit).

    Without `write` (the user's consent to change a file in their home) nothing is written: the change
    says to print the snippet, unless the entry is already there.
    """
    import tomlkit

    wanted = server_entry("codex")
    text = _read_text(path)
    try:
        current = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise ClientError(
            f"{path} is not valid TOML ({exc}); left as it is; add this by hand:\n{codex_snippet()}"
        ) from None
    servers = current.get("mcp_servers", {})
    if not isinstance(servers, dict):
        raise ClientError(
            f"{path}: mcp_servers is not a table; left as it is; add this by hand:\n{codex_snippet()}"
        )
    existing = servers.get(SERVER_NAME)
    settled = _settled(path, existing, wanted, force, f"[mcp_servers.{SERVER_NAME}] ({existing})")
    if settled is not None:
        return settled
    if not write:
        return Change(
            path, "print", "a file in your home: pass --write-home to let init add it", codex_snippet()
        )
    doc = tomlkit.parse(text or "")
    table = doc.get("mcp_servers")
    if table is None:
        table = tomlkit.table(is_super_table=True)
        doc.add("mcp_servers", table)
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
    merged_servers = again.get("mcp_servers", {})
    if merged_servers.get(SERVER_NAME) != wanted or any(
        merged_servers.get(n) != v for n, v in others.items()
    ):
        raise ClientError(
            f"{path}: could not merge safely; left as it is; add this by hand:\n{codex_snippet()}"
        )
    note = f"server {SERVER_NAME!r}" + (f" beside {', '.join(others)}" if others else "")
    return _write(path, out, text is not None, note)


def merge_stop_hook(path: Path, client: str) -> Change:
    """Register `loopengt hook stop` as the client's stop hook, keeping every other hook."""
    text = _read_text(path)
    data = _load_json_object(path, text, hook_snippet(client))
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict):
        raise ClientError(
            f"{path}: 'hooks' is not an object; left as it is; add this by hand:\n{hook_snippet(client)}"
        )
    event = "Stop" if client == "claude-code" else "stop"
    entries = hooks.get(event, [])
    if not isinstance(entries, list):
        raise ClientError(
            f"{path}: hooks.{event} is not a list; left as it is; add this by hand:\n{hook_snippet(client)}"
        )
    if client == "claude-code":
        commands = [
            h.get("command")
            for group in entries
            if isinstance(group, dict) and isinstance(group.get("hooks"), list)
            for h in group["hooks"]
            if isinstance(h, dict)
        ]
        addition: dict[str, Any] = _claude_hook_group()
    else:
        commands = [h.get("command") for h in entries if isinstance(h, dict)]
        addition = {"command": HOOK_COMMAND}
    if any(isinstance(c, str) and _is_our_hook(c) for c in commands):
        return Change(path, "unchanged", f"{event} hook `{HOOK_COMMAND}` is registered")
    merged = copy.deepcopy(data)
    if client == "cursor":
        merged.setdefault("version", 1)
    merged.setdefault("hooks", {}).setdefault(event, []).append(addition)
    _check_json(path, merged, lambda d: d["hooks"][event][:-1] == entries)
    note = f"{event} hook `{HOOK_COMMAND}`" + (f" after {len(entries)} other" if entries else "")
    return _write(path, _dump_json(merged), text is not None, note)


def _is_our_hook(command: str) -> bool:
    return re.search(r"(^|[\s/\\])loopengt(\.exe)?\s+hook\s+stop\b", command) is not None


# --- slash commands from the packaged prompts ------------------------------------------------------------

_CATCH_ALL = re.compile(r"[ \t]*\(\$ARGUMENTS\)|[ \t]*\$ARGUMENTS")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def slash_command_text(
    client: str, name: str, description: str, arguments: list[dict[str, Any]], body: str
) -> str:
    """A packaged prompt as a slash command file.

    The MCP prompt fills each `{{name}}` from its arguments and puts extra text at `$ARGUMENTS`. A slash
    command gets one string: in Claude Code `$ARGUMENTS` is it, so a prompt with one argument gets
    `$ARGUMENTS` in that argument's place; Cursor appends what was typed after the command to the file,
    so the file names the argument instead. Claude Code reads `description` and `argument-hint` from
    front matter; Cursor's commands are plain markdown.
    """
    names = [str(a.get("name")) for a in arguments if a.get("name")]
    required = {str(a.get("name")) for a in arguments if a.get("required")}

    def fill(match: re.Match[str]) -> str:
        arg = match.group(1)
        if client == "claude-code" and len(names) == 1:
            return "$ARGUMENTS"
        typed = "typed after the command" if client == "cursor" else "given in the arguments"
        return f"(the {arg} {typed}{'' if arg in required else ', if any'})"

    text = body
    if client == "cursor" or len(names) == 1:
        text = _CATCH_ALL.sub("", text)
    elif "$ARGUMENTS" not in text:
        text = "Arguments: $ARGUMENTS\n\n" + text
    text = _PLACEHOLDER.sub(fill, text)
    if client == "claude-code":
        hint = " ".join(f"<{n}>" if n in required else f"[{n}]" for n in names)
        front = [f"description: {json.dumps(description, ensure_ascii=False)}"]
        if hint:
            front.append(f"argument-hint: {json.dumps(hint)}")
        text = "---\n" + "\n".join(front) + "\n---\n" + text
    return text if text.endswith("\n") else text + "\n"


def install_slash_commands(client: str, project: Path, *, force: bool = False) -> list[Change]:
    folder = commands_dir(client, project)
    if folder is None:
        return []
    from loopengt_server.prompts import load_prompt_files

    changes = []
    for prompt in load_prompt_files():
        path = folder / f"{prompt.name}.md"
        wanted = slash_command_text(client, prompt.name, prompt.description, prompt.arguments, prompt.body)
        existing = _read_text(path)
        if existing == wanted:
            changes.append(Change(path, "unchanged", f"/{prompt.name}"))
        elif existing is not None and not force:
            changes.append(
                Change(path, "kept", "differs from loopengt's prompt; left as it is (--force replaces it)")
            )
        else:
            changes.append(_write(path, wanted, existing is not None, f"/{prompt.name}"))
    return changes


# --- the whole of `init --client` -----------------------------------------------------------------------


def init_client(
    client: str, project: Path, *, stop_hook: bool = False, write_home: bool = False, force: bool = False
) -> list[Change]:
    """Configure one client in `project`; returns what happened to each file."""
    if client not in CLIENTS:
        raise InvalidArgument(f"unknown client {client!r}; use one of {', '.join(CLIENTS)}")
    path = mcp_config_path(client, project)
    if client == "codex":
        changes = [merge_codex_server(path, write=write_home, force=force)]
    else:
        changes = [merge_json_server(path, client, force=force)]
    changes += install_slash_commands(client, project, force=force)
    hook_path = hook_config_path(client, project)
    if stop_hook and hook_path is not None:
        changes.append(merge_stop_hook(hook_path, client))
    return changes


def loopengt_on_path() -> str | None:
    return shutil.which(SERVER_COMMAND)
