"""One record per editor client: everything `init`, `hook`, `doctor` and the README table know about it.

Adding a client is one record here plus its payload fixtures in tests/fixtures/hooks/<client>/. Sources
(read 2026-12): Claude Code https://code.claude.com/docs/en/hooks; Cursor https://cursor.com/docs/agent/hooks;
VS Code https://code.visualstudio.com/docs/agent-customization/hooks and
https://code.visualstudio.com/docs/agents/reference/hooks-reference; Codex
https://developers.openai.com/codex/hooks and the schemas in openai/codex codex-rs/hooks/schema/generated;
Antigravity https://antigravity.google/docs/mcp.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loopengt_core.model.plugins import CLIENTS as CLIENT_GROUP
from loopengt_core.model.plugins import Plugin, PluginProblem, load_group

SERVER_NAME = "loopengt"
SERVER_COMMAND = "loopengt"
SERVER_ARGS = ("serve",)
STOP_COMMAND = "loopengt hook stop"
SESSION_COMMAND = "loopengt hook session"
SESSION_SOURCES = "startup|resume|compact"

HookKind = Literal["stop", "session"]


def codex_home() -> Path:
    """Codex's home: `$CODEX_HOME`, else `~/.codex`."""
    configured = os.environ.get("CODEX_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".codex"


def antigravity_home() -> Path:
    """Antigravity's user folder (its MCP config lives there, not in the project)."""
    return Path.home() / ".gemini" / "antigravity"


@dataclass(frozen=True)
class Place:
    """A file a client reads: in the project, or in the user's home (written only with consent)."""

    relative: str  # to the project, or to the home folder below
    home: Callable[[], Path] | None = None
    shown_home: str = ""  # how the README and messages name a home file: "~/.codex/config.toml"

    def path(self, project: Path) -> Path:
        """The file's path: in the user's home for a user-wide file, else in `project`."""
        return (self.home() if self.home is not None else project) / self.relative

    @property
    def shown(self) -> str:
        """The path as messages show it."""
        return self.shown_home or self.relative


@dataclass(frozen=True)
class McpConfig:
    place: Place
    format: Literal["json", "toml"]
    key: str  # the servers table: mcpServers, servers, mcp_servers
    extra: dict[str, Any] = field(default_factory=dict)  # VS Code: {"type": "stdio"}

    def entry(self) -> dict[str, Any]:
        """The client's config entry that starts loopengt's MCP server."""
        return {**self.extra, "command": SERVER_COMMAND, "args": list(SERVER_ARGS)}


@dataclass(frozen=True)
class Registration:
    """One hook entry: the client's event name, our command, and the matcher (sources) if the client has one."""

    kind: HookKind
    event: str
    command: str
    matcher: str | None = None


@dataclass(frozen=True)
class HookFile:
    """Where and how hooks are registered.

    layout: `groups` is Claude Code's (and Codex's) `{"matcher": ..., "hooks": [{"type": "command", ...}]}`;
    `typed` is VS Code's flat `{"type": "command", "command": ...}`; `plain` is Cursor's `{"command": ...}`.
    """

    place: Place
    layout: Literal["groups", "typed", "plain"]
    registrations: tuple[Registration, ...]
    header: dict[str, Any] = field(default_factory=dict)  # Cursor: {"version": 1}


@dataclass(frozen=True)
class Protocol:
    """How a client's hook payload looks and how it wants its answer.

    `event_key` names the event field; `stop_event` / `session_events` its values; `session_keys` the
    session id fields, best first; `shape` tells this client's payload from another's with the same
    event names (Codex's Stop carries `turn_id`, Claude Code's does not).
    """

    event_key: str
    stop_event: str
    session_events: tuple[str, ...]
    session_keys: tuple[str, ...]
    place_keys: tuple[str, ...]  # fields naming the project folder (cwd, workspace_roots)
    stop_answer: Callable[[str], dict[str, Any]]
    session_answer: Callable[[str], dict[str, Any]]
    allow_answer: dict[str, Any] | None = None  # printed to let the agent go; None prints nothing
    shape: Callable[[dict[str, Any]], bool] = lambda data: True
    again_key: str | None = "stop_hook_active"  # true: a stop hook already continued this cycle
    loop_count_key: str | None = None  # Cursor: follow-ups already sent in this chain
    status_key: str | None = None  # Cursor: completed / aborted / error

    def kind_of(self, data: dict[str, Any]) -> HookKind | None:
        """Which hook a payload is for (stop or session), by its event name; None for another event."""
        event = data.get(self.event_key)
        if event == self.stop_event:
            return "stop"
        return "session" if event in self.session_events else None

    def matches(self, data: dict[str, Any]) -> bool:
        """Whether a payload is this client's: one of its hook events, in its shape."""
        return self.kind_of(data) is not None and self.shape(data)


@dataclass(frozen=True)
class ClientRecord:
    name: str
    title: str
    mcp: McpConfig
    commands: str | None  # the slash command folder (prompt files as markdown), relative to the project
    hooks: HookFile | None
    protocol: Protocol | None
    prompts: str  # README: how the packaged prompts reach the agent
    session_note: str  # README: when the session hook puts the run back
    tasks: str  # README: MCP Tasks (2026-07-28)
    timeout: str  # README: how long the client waits for a tool call


def _block(reason: str) -> dict[str, Any]:
    return {"decision": "block", "reason": reason}


def _context(event: str) -> Callable[[str], dict[str, Any]]:
    return lambda text: {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


_CLAUDE_STYLE = dict(
    event_key="hook_event_name",
    stop_event="Stop",
    session_events=("SessionStart",),
    session_keys=("session_id",),
    place_keys=("cwd",),
    stop_answer=_block,
    session_answer=_context("SessionStart"),
)

CLAUDE_CODE = ClientRecord(
    name="claude-code",
    title="Claude Code",
    mcp=McpConfig(Place(".mcp.json"), "json", "mcpServers"),
    commands=".claude/commands",
    hooks=HookFile(
        Place(".claude/settings.json"),
        "groups",
        (
            Registration("stop", "Stop", STOP_COMMAND),
            Registration("session", "SessionStart", SESSION_COMMAND, SESSION_SOURCES),
        ),
    ),
    protocol=Protocol(**_CLAUDE_STYLE, shape=lambda data: "turn_id" not in data),  # type: ignore[arg-type]
    prompts="slash commands in `.claude/commands/`",
    session_note="startup, resume, compact (not after /clear)",
    tasks="yes: `step`, `start_run`, `resume` answer as tasks",
    timeout="`MCP_TOOL_TIMEOUT` (ms) or the entry's `timeout`",
)

CURSOR = ClientRecord(
    name="cursor",
    title="Cursor",
    mcp=McpConfig(Place(".cursor/mcp.json"), "json", "mcpServers"),
    commands=".cursor/commands",
    hooks=HookFile(
        Place(".cursor/hooks.json"),
        "plain",
        (
            Registration("stop", "stop", STOP_COMMAND),
            Registration("session", "sessionStart", SESSION_COMMAND),
        ),
        header={"version": 1},
    ),
    protocol=Protocol(
        event_key="hook_event_name",
        stop_event="stop",
        session_events=("sessionStart",),
        session_keys=("conversation_id", "session_id"),
        place_keys=("workspace_roots", "cwd"),
        stop_answer=lambda reason: {"followup_message": reason},
        session_answer=lambda text: {"additional_context": text},
        allow_answer={},
        again_key=None,
        loop_count_key="loop_count",
        status_key="status",
    ),
    prompts="slash commands in `.cursor/commands/`",
    session_note="new conversations (no hook after a compaction)",
    tasks="no: bounded answers, `get_run` waits",
    timeout="not documented",
)

VSCODE = ClientRecord(
    name="vscode",
    title="VS Code",
    mcp=McpConfig(Place(".vscode/mcp.json"), "json", "servers", {"type": "stdio"}),
    commands=None,
    hooks=HookFile(
        Place(".github/hooks/loopengt.json"),
        "typed",
        (
            Registration("stop", "Stop", STOP_COMMAND),
            Registration("session", "SessionStart", SESSION_COMMAND),
        ),
    ),
    protocol=Protocol(
        event_key="hookEventName",
        stop_event="Stop",
        session_events=("SessionStart",),
        session_keys=("sessionId",),
        place_keys=("cwd",),
        stop_answer=lambda reason: {"hookSpecificOutput": {"hookEventName": "Stop", **_block(reason)}},
        session_answer=_context("SessionStart"),
    ),
    prompts="MCP prompts (`/mcp.loopengt.drive_run`)",
    session_note="new sessions (PreCompact cannot add context)",
    tasks="yes: `step`, `start_run`, `resume` answer as tasks",
    timeout="not documented",
)

CODEX = ClientRecord(
    name="codex",
    title="Codex",
    mcp=McpConfig(Place("config.toml", codex_home, "~/.codex/config.toml"), "toml", "mcp_servers"),
    commands=None,
    hooks=HookFile(
        Place("hooks.json", codex_home, "~/.codex/hooks.json"),
        "groups",
        (
            Registration("stop", "Stop", STOP_COMMAND),
            Registration("session", "SessionStart", SESSION_COMMAND, SESSION_SOURCES),
        ),
    ),
    protocol=Protocol(**_CLAUDE_STYLE, shape=lambda data: "turn_id" in data),  # type: ignore[arg-type]
    prompts="MCP prompts",
    session_note="startup, resume, compact (not after /clear; PostCompact cannot add context)",
    tasks="no: bounded answers, `get_run` waits",
    timeout="`tool_timeout_sec` (300 s by default since mid-2026)",
)

ANTIGRAVITY = ClientRecord(
    name="antigravity",
    title="Antigravity",
    mcp=McpConfig(
        Place("mcp_config.json", antigravity_home, "~/.gemini/antigravity/mcp_config.json"),
        "json",
        "mcpServers",
    ),
    commands=None,
    hooks=None,
    protocol=None,
    prompts="MCP prompts",
    session_note="no hooks: the `drive_run` prompt or `loopengt://runs/{id}/context`",
    tasks="not documented: bounded answers, `get_run` waits",
    timeout="not documented",
)

RECORDS: tuple[ClientRecord, ...] = (CLAUDE_CODE, CURSOR, VSCODE, CODEX, ANTIGRAVITY)
"""The built-in clients (the README table lists these); `all_records()` adds the installed plugins'."""
CLIENTS = tuple(r.name for r in RECORDS)  # built-in only: `client_names()` has the plugins' too
HOOK_CLIENTS = tuple(r.name for r in RECORDS if r.hooks is not None)
# Codex before Claude Code: their payloads differ only by Codex's extra fields
DETECTION_ORDER = (CODEX, CLAUDE_CODE, CURSOR, VSCODE)


def _check_plugin(name: str, obj: Any) -> str | None:
    """A `loopengt.clients` entry point gives a ClientRecord, or a function without arguments returning one."""
    if not isinstance(obj, ClientRecord) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - the plugin's failure is its problem, never the caller's
            return f"calling it failed: {type(exc).__name__}: {exc}"
    if not isinstance(obj, ClientRecord):
        return f"it gives a {type(obj).__name__}, not a loopengt_server.clients.records.ClientRecord"
    if obj.name != name:
        return f"its record is named {obj.name!r}, not {name!r} like its entry point"
    if name in {r.name for r in RECORDS}:
        return f"{name!r} is a built-in client"
    if (obj.hooks is None) != (obj.protocol is None):
        return "a record with hooks needs a protocol (how its payloads look), and one without hooks none"
    return None


def client_plugins() -> tuple[tuple[Plugin, ...], tuple[PluginProblem, ...]]:
    """The installed client plugins (`loopengt.clients`) and the ones that cannot be used (`doctor`)."""
    return load_group(CLIENT_GROUP, _check_plugin)


def _plugin_record(plugin: Plugin) -> ClientRecord:
    obj = plugin.obj
    return obj if isinstance(obj, ClientRecord) else obj()


def all_records() -> tuple[ClientRecord, ...]:
    """The built-in clients, then the plugins' (a broken plugin is left out; `doctor` names it)."""
    return RECORDS + tuple(_plugin_record(p) for p in client_plugins()[0])


def client_names() -> tuple[str, ...]:
    """The names `--client` takes: every known editor client, built-in and from plugins."""
    return tuple(r.name for r in all_records())


def hook_client_names() -> tuple[str, ...]:
    """The clients that support loopengt's hooks."""
    return tuple(r.name for r in all_records() if r.hooks is not None)


def record(name: str) -> ClientRecord:
    """The record of the client named `name`.

    Raises:
        InvalidArgument: no such client (the message lists the known ones), or its plugin is broken.
    """
    from loopengt_core.model.errors import InvalidArgument

    found = next((r for r in all_records() if r.name == name), None)
    if found is not None:
        return found
    broken = next((p for p in client_plugins()[1] if p.name == name), None)
    if broken is not None:
        raise InvalidArgument(f"client {name!r} comes from a broken plugin: {broken.describe()}")
    raise InvalidArgument(f"unknown client {name!r}; use one of {', '.join(client_names())}")


def detect(data: dict[str, Any]) -> ClientRecord | None:
    """The client whose payload this is, by its shape; None when no record's protocol matches.

    The built-in clients are tried first (in DETECTION_ORDER), then the plugins' in their entry point order.
    """
    order = DETECTION_ORDER + tuple(r for r in all_records() if r not in RECORDS)
    return next((r for r in order if r.protocol is not None and r.protocol.matches(data)), None)


def readme_table() -> str:
    """The README's clients table, generated from the records (a test keeps the README equal to it)."""

    def hook(rec: ClientRecord, kind: HookKind) -> str:
        if rec.hooks is None:
            return "no"
        event = next(r.event for r in rec.hooks.registrations if r.kind == kind)
        return f"`{rec.hooks.place.shown}` {event}"

    rows = [
        "| client | MCP config | prompts | stop hook | session hook | MCP Tasks | tool call timeout |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rec in RECORDS:
        session = f"{hook(rec, 'session')}: {rec.session_note}" if rec.hooks else rec.session_note
        rows.append(
            f"| {rec.title} (`{rec.name}`) | `{rec.mcp.place.shown}` ({rec.mcp.key}) | {rec.prompts} | "
            f"{hook(rec, 'stop')} | {session} | {rec.tasks} | {rec.timeout} |"
        )
    return "\n".join(rows) + "\n"


def snippet(rec: ClientRecord) -> str:
    """The MCP entry as text to add by hand."""
    if rec.mcp.format == "toml":
        args = ", ".join(json.dumps(a) for a in SERVER_ARGS)
        return f'[{rec.mcp.key}.{SERVER_NAME}]\ncommand = "{SERVER_COMMAND}"\nargs = [{args}]\n'
    return json.dumps({rec.mcp.key: {SERVER_NAME: rec.mcp.entry()}}, indent=2) + "\n"
