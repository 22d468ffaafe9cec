"""MCP prompts from the markdown files of this package (front matter: name, description, arguments).

They are package data, read with `importlib.resources`, so a wheel installed non-editable (pip, pipx)
serves them as a checkout does.

The same files work as slash commands in Claude Code (`.claude/commands/`) and Cursor
(`.cursor/commands/`): there `$ARGUMENTS` stands for what the user typed; here each `{{name}}` is
filled from the prompt's arguments.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument

from loopengt_core.model.errors import LoopengtError

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.S)


@dataclass(frozen=True)
class PromptFile:
    name: str
    description: str
    arguments: list[dict[str, Any]]
    body: str


class PromptsMissing(LoopengtError):
    """The installed package has no prompt files: a broken install, not something the user wrote."""

    code = "prompts_missing"


def prompts_dir() -> Traversable:
    """The folder of the prompt files shipped with the package."""
    return resources.files(__name__)


def load_prompt_files(folder: Traversable | None = None) -> list[PromptFile]:
    """Every prompt file, by name. Raises PromptsMissing when there are none (with the fix)."""
    source = folder or prompts_dir()
    paths = sorted((p for p in source.iterdir() if p.name.endswith(".md")), key=lambda p: p.name)
    if not paths:
        raise PromptsMissing(
            f"no prompt files (*.md) in {source}: the loopengt install is incomplete; "
            "reinstall it (pip install --force-reinstall loopengt, or pipx reinstall loopengt)"
        )
    out = []
    for path in paths:
        match = FRONT_MATTER.match(path.read_text(encoding="utf-8"))
        if match is None:
            raise ValueError(f"{path}: a prompt file starts with front matter between --- lines")
        meta = yaml.safe_load(match.group(1)) or {}
        out.append(
            PromptFile(
                str(meta.get("name", path.name.removesuffix(".md"))),
                str(meta.get("description", "")),
                list(meta.get("arguments") or []),
                match.group(2),
            )
        )
    return out


def render_prompt(body: str, arguments: dict[str, Any]) -> str:
    """A prompt's body with `{{name}}` filled from `arguments` and `$ARGUMENTS` replaced by all of them (the
    slash-command convention)."""
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(arguments.get(m.group(1)) or ""), body)
    joined = " ".join(str(v) for v in arguments.values() if v)
    return text.replace("$ARGUMENTS", joined)


def with_context(text: str, run_id: Any, context: Callable[[str], str]) -> str:
    """`drive_run`'s text followed by where the run stands now (the same text the session hook gives)."""
    try:
        now = context(str(run_id))
    except LoopengtError as exc:
        now = exc.message
    return f"{text.rstrip()}\n\nWhere the run stands now:\n{now}\n"


def register_prompts(mcp: MCPServer, context: Callable[[str], str] | None = None) -> None:
    """Serve every prompt file. A broken install (no prompt files) is logged on stderr and the server
    runs without prompts; `loopengt doctor` reports it with the fix.

    `context(run_id)`: the run's context text, appended to `drive_run` so that a client without hooks
    gets the run's state with the instructions in one call.
    """
    try:
        items = load_prompt_files()
    except PromptsMissing as exc:
        print(f"loopengt: {exc}", file=sys.stderr)
        return
    for item in items:

        def render(_body: str = item.body, _name: str = item.name, **arguments: Any) -> str:
            text = render_prompt(_body, arguments)
            if _name == "drive_run" and context is not None and arguments.get("run_id"):
                return with_context(text, arguments["run_id"], context)
            return text

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
