"""MCP prompts from the markdown files in `prompts/` (front matter: name, description, arguments).

The same files work as slash commands in Claude Code (`.claude/commands/`) and Cursor
(`.cursor/commands/`): there `$ARGUMENTS` stands for what the user typed; here each `{{name}}` is
filled from the prompt's arguments.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.S)


@dataclass(frozen=True)
class PromptFile:
    name: str
    description: str
    arguments: list[dict[str, Any]]
    body: str


def prompts_dir() -> Path:
    return Path(os.environ.get("LOOPENGT_PROMPTS_DIR") or Path(__file__).resolve().parents[1] / "prompts")


def load_prompt_files(folder: Path | None = None) -> list[PromptFile]:
    out = []
    for path in sorted((folder or prompts_dir()).glob("*.md")):
        match = FRONT_MATTER.match(path.read_text(encoding="utf-8"))
        if match is None:
            raise ValueError(f"{path}: a prompt file starts with front matter between --- lines")
        meta = yaml.safe_load(match.group(1)) or {}
        out.append(
            PromptFile(
                str(meta.get("name", path.stem)),
                str(meta.get("description", "")),
                list(meta.get("arguments") or []),
                match.group(2),
            )
        )
    return out


def render_prompt(body: str, arguments: dict[str, Any]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(arguments.get(m.group(1)) or ""), body)
    joined = " ".join(str(v) for v in arguments.values() if v)
    return text.replace("$ARGUMENTS", joined)


def register_prompts(mcp: MCPServer) -> None:
    for item in load_prompt_files():

        def render(_body: str = item.body, **arguments: Any) -> str:
            return render_prompt(_body, arguments)

        mcp.add_prompt(
            Prompt(
                name=item.name,
                description=item.description,
                fn=render,
                arguments=[
                    PromptArgument(
                        name=a["name"],
                        description=a.get("description"),
                        required=bool(a.get("required", False)),
                    )
                    for a in item.arguments
                ],
            )
        )
