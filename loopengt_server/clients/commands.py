"""The packaged prompts as slash command files (Claude Code, Cursor): the same text the MCP prompts serve."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from loopengt_server.clients.merge import Change, read_text, write_file
from loopengt_server.clients.records import record

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
    """Write the prompts as the client's slash commands into the project; none for a client without them. An
    existing file is kept unless `force`."""
    rec = record(client)
    if rec.commands is None:
        return []
    folder = project / rec.commands
    from loopengt_server.mcp.prompts import load_prompt_files

    changes = []
    for prompt in load_prompt_files():
        path = folder / f"{prompt.name}.md"
        wanted = slash_command_text(client, prompt.name, prompt.description, prompt.arguments, prompt.body)
        existing = read_text(path)
        if existing == wanted:
            changes.append(Change(path, "unchanged", f"/{prompt.name}"))
        elif existing is not None and not force:
            changes.append(
                Change(path, "kept", "differs from loopengt's prompt; left as it is (--force replaces it)")
            )
        else:
            changes.append(write_file(path, wanted, existing is not None, f"/{prompt.name}"))
    return changes
