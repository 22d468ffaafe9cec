"""`loopengt init --client X [--stop-hook]`: each editor's MCP configuration, slash commands and stop hook,
merged into what is there, and a no-op (byte for byte) the second time. The README shows the same files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import LOOPENGT, assert_no_traceback, server_env
from typer.testing import CliRunner

from loopengt_server.cli import app
from loopengt_server.prompts import load_prompt_files

README = Path(__file__).parents[1] / "README.md"
PROMPTS = [p.name for p in load_prompt_files()]
OURS = {"command": "loopengt", "args": ["serve"]}
OTHER = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."], "env": {"X": "1"}}

JSON_CLIENTS = {
    "claude-code": (".mcp.json", "mcpServers", OURS),
    "cursor": (".cursor/mcp.json", "mcpServers", OURS),
    "vscode": (".vscode/mcp.json", "servers", {"type": "stdio", **OURS}),
}
COMMAND_DIRS = {"claude-code": ".claude/commands", "cursor": ".cursor/commands"}
HOOK_FILES = {"claude-code": ".claude/settings.json", "cursor": ".cursor/hooks.json"}


def init(project: Path, *args: str, codex_home: Path | None = None) -> str:
    """`loopengt init ARGS --project PROJECT` in this process; its stdout (exit 0 asserted)."""
    env = {"CODEX_HOME": str(codex_home)} if codex_home is not None else {}
    result = CliRunner().invoke(app, ["init", *args, "--project", str(project)], env=env)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, as a person runs it."""
    return subprocess.run(
        [str(LOOPENGT), *args],
        cwd=cwd,
        env={**os.environ, **server_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def files(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


# --- MCP configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("client", sorted(JSON_CLIENTS))
def test_an_empty_project(client: str, tmp_path: Path) -> None:
    name, key, entry = JSON_CLIENTS[client]
    out = init(tmp_path, "--client", client)
    assert read_json(tmp_path / name) == {key: {"loopengt": entry}}
    assert f"created {tmp_path / name}" in out
    assert not (tmp_path / "loop.yaml").exists(), "--client alone writes no loop.yaml"
    written = files(tmp_path)
    out = init(tmp_path, "--client", client)
    assert files(tmp_path) == written
    assert "created" not in out
    assert "updated" not in out


@pytest.mark.parametrize("client", sorted(JSON_CLIENTS))
def test_a_project_with_another_server(client: str, tmp_path: Path) -> None:
    name, key, entry = JSON_CLIENTS[client]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    before = {"inputs": [{"id": "token", "type": "promptString"}], key: {"files": OTHER}}
    path.write_text(json.dumps(before, indent=4), encoding="utf-8")
    out = init(tmp_path, "--client", client)
    assert f"updated {path}" in out
    after = read_json(path)
    assert after == {"inputs": before["inputs"], key: {"files": OTHER, "loopengt": entry}}
    assert list(after[key]) == ["files", "loopengt"]
    written = files(tmp_path)
    init(tmp_path, "--client", client)
    assert files(tmp_path) == written


def test_our_entry_with_hand_made_additions_counts_as_configured(tmp_path: Path) -> None:
    path = tmp_path / ".mcp.json"
    mine = {"mcpServers": {"loopengt": {**OURS, "env": {"LOOPENGT_LOG_LEVEL": "INFO"}}}}
    path.write_text(json.dumps(mine), encoding="utf-8")
    init(tmp_path, "--client", "claude-code")
    assert path.read_text("utf-8") == json.dumps(mine)


def test_a_different_loopengt_entry_is_kept_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    old = {"mcpServers": {"loopengt": {"command": "loopengt", "args": ["mcp", "--transport", "stdio"]}}}
    path.write_text(json.dumps(old), encoding="utf-8")
    out = init(tmp_path, "--client", "cursor")
    assert f"kept {path}" in out
    assert "--force" in out
    assert read_json(path) == old
    init(tmp_path, "--client", "cursor", "--force")
    assert read_json(path) == {"mcpServers": {"loopengt": OURS}}


def test_a_file_that_is_not_json_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / ".vscode" / "mcp.json"
    path.parent.mkdir()
    text = '{\n  // my servers\n  "servers": {}\n}\n'
    path.write_text(text, encoding="utf-8")
    result = cli("init", "--client", "vscode", cwd=tmp_path)
    assert result.returncode == 1
    assert_no_traceback(result.stdout + result.stderr)
    assert "not plain JSON" in result.stderr
    assert '"servers"' in result.stderr, "the snippet to add by hand is shown"
    assert path.read_text("utf-8") == text


# --- Codex: a file in the home folder, written only with consent -----------------------------------------


def test_codex_prints_the_snippet_without_consent(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    out = init(tmp_path / "project", "--client", "codex", codex_home=home)
    assert not home.exists()
    assert "--write-home" in out
    snippet = out[out.index("[mcp_servers.loopengt]") :]
    assert tomllib.loads(snippet) == {"mcp_servers": {"loopengt": OURS}}


def test_codex_writes_with_consent_keeping_comments_and_other_servers(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    config = home / "config.toml"
    before = (
        '# my Codex settings\nmodel = "o3"\n\n[mcp_servers.files]\ncommand = "npx"  # the filesystem server\n'
        'args = ["-y", "@modelcontextprotocol/server-filesystem"]\n'
    )
    config.write_text(before, encoding="utf-8")
    out = init(tmp_path, "--client", "codex", "--write-home", codex_home=home)
    assert f"updated {config}" in out
    text = config.read_text("utf-8")
    assert text.startswith(before), "what was there stays as it was, comments included"
    assert tomllib.loads(text) == {
        "model": "o3",
        "mcp_servers": {
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem"]},
            "loopengt": OURS,
        },
    }
    init(tmp_path, "--client", "codex", "--yes", codex_home=home)
    out = init(tmp_path, "--client", "codex", codex_home=home)  # no consent needed to change nothing
    assert config.read_text("utf-8") == text
    assert f"unchanged {config}" in out


def test_codex_on_an_empty_home(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    init(tmp_path, "--client", "codex", "-y", codex_home=home)
    config = home / "config.toml"
    assert tomllib.loads(config.read_text("utf-8")) == {"mcp_servers": {"loopengt": OURS}}
    written = config.read_bytes()
    init(tmp_path, "--client", "codex", "-y", codex_home=home)
    assert config.read_bytes() == written


# --- slash commands -------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", sorted(COMMAND_DIRS))
def test_prompts_become_slash_commands(client: str, tmp_path: Path) -> None:
    init(tmp_path, "--client", client)
    folder = tmp_path / COMMAND_DIRS[client]
    assert sorted(p.stem for p in folder.glob("*.md")) == sorted(PROMPTS)
    for path in folder.glob("*.md"):
        text = path.read_text("utf-8")
        assert "{{" not in text, f"{path}: an unfilled MCP placeholder"
        if client == "claude-code":
            assert text.startswith("---\ndescription: "), path
            assert "$ARGUMENTS" in text, path
        else:
            assert "$ARGUMENTS" not in text, f"{path}: Cursor does not substitute $ARGUMENTS"
    drive = (folder / "drive_run.md").read_text("utf-8")
    if client == "claude-code":
        assert 'argument-hint: "<run_id>"' in drive
        assert "Drive the loopengt run `$ARGUMENTS` to its end." in drive
    else:
        assert "Drive the loopengt run `(the run_id typed after the command)` to its end." in drive


def test_an_edited_slash_command_is_kept_unless_forced(tmp_path: Path) -> None:
    init(tmp_path, "--client", "claude-code")
    path = tmp_path / ".claude" / "commands" / "drive_run.md"
    path.write_text("my own drive_run\n", encoding="utf-8")
    out = init(tmp_path, "--client", "claude-code")
    assert f"kept {path}" in out
    assert path.read_text("utf-8") == "my own drive_run\n"
    init(tmp_path, "--client", "claude-code", "--force")
    assert "$ARGUMENTS" in path.read_text("utf-8")


# --- the stop hook --------------------------------------------------------------------------------------


def test_claude_code_stop_hook_is_merged_and_idempotent(tmp_path: Path) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    other_stop = {"hooks": [{"type": "command", "command": "notify-send done"}]}
    pre = {"matcher": "Bash", "hooks": [{"type": "command", "command": "guard.sh"}]}
    before = {
        "permissions": {"allow": ["Bash(pytest:*)"]},
        "hooks": {"PreToolUse": [pre], "Stop": [other_stop]},
    }
    settings.write_text(json.dumps(before), encoding="utf-8")
    init(tmp_path, "--client", "claude-code", "--stop-hook")
    assert read_json(settings) == {
        "permissions": before["permissions"],
        "hooks": {
            "PreToolUse": [pre],
            "Stop": [other_stop, {"hooks": [{"type": "command", "command": "loopengt hook stop"}]}],
        },
    }
    written = files(tmp_path)
    out = init(tmp_path, "--client", "claude-code", "--stop-hook")
    assert files(tmp_path) == written
    assert f"unchanged {settings}" in out


def test_cursor_stop_hook_on_an_empty_project_and_beside_others(tmp_path: Path) -> None:
    hooks = tmp_path / ".cursor" / "hooks.json"
    init(tmp_path, "--client", "cursor", "--stop-hook")
    assert read_json(hooks) == {"version": 1, "hooks": {"stop": [{"command": "loopengt hook stop"}]}}
    written = files(tmp_path)
    init(tmp_path, "--client", "cursor", "--stop-hook")
    assert files(tmp_path) == written

    other = tmp_path / "other"
    (other / ".cursor").mkdir(parents=True)
    before = {
        "version": 1,
        "hooks": {"afterFileEdit": [{"command": "./format.sh"}], "stop": [{"command": "./audit.sh"}]},
    }
    (other / ".cursor" / "hooks.json").write_text(json.dumps(before), encoding="utf-8")
    init(other, "--client", "cursor", "--stop-hook")
    assert read_json(other / ".cursor" / "hooks.json") == {
        "version": 1,
        "hooks": {
            "afterFileEdit": [{"command": "./format.sh"}],
            "stop": [{"command": "./audit.sh"}, {"command": "loopengt hook stop"}],
        },
    }
    written = files(other)
    init(other, "--client", "cursor", "--stop-hook")
    assert files(other) == written


def test_a_hook_with_extra_options_counts_as_registered(tmp_path: Path) -> None:
    hooks = tmp_path / ".cursor" / "hooks.json"
    hooks.parent.mkdir()
    mine = {
        "version": 1,
        "hooks": {"stop": [{"command": "loopengt hook stop --max-loops 3", "loop_limit": 3}]},
    }
    hooks.write_text(json.dumps(mine), encoding="utf-8")
    init(tmp_path, "--client", "cursor", "--stop-hook")
    assert read_json(hooks) == mine


def test_stop_hook_needs_a_client_that_has_one(tmp_path: Path) -> None:
    for args in (["--stop-hook"], ["--client", "vscode", "--stop-hook"]):
        result = cli("init", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "--stop-hook needs --client claude-code or --client cursor" in result.stderr
        assert_no_traceback(result.stdout + result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_unknown_client(tmp_path: Path) -> None:
    result = cli("init", "--client", "emacs", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown client 'emacs'; use one of claude-code, cursor, vscode, codex" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- init as before -------------------------------------------------------------------------------------


def test_template_and_client_together_and_init_alone(tmp_path: Path) -> None:
    result = cli("init", "--client", "claude-code", "--template", "planner_executor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".mcp.json").is_file()
    assert "name: planner-executor" in (tmp_path / "loop.yaml").read_text("utf-8")
    alone = tmp_path / "alone"
    alone.mkdir()
    result = cli("init", cwd=alone)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in alone.iterdir()) == ["loop-spec.schema.json", "loop.yaml"]
    assert "name: fix-tests" in (alone / "loop.yaml").read_text("utf-8")


# --- the README shows what init writes ------------------------------------------------------------------


def readme_section() -> str:
    text = README.read_text("utf-8")
    start = text.index("## Use it from your editor")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_snippets_are_what_init_writes(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    project = tmp_path / "project"
    project.mkdir()
    for client in ("claude-code", "cursor", "vscode", "codex"):
        init(
            project,
            "--client",
            client,
            "--write-home",
            *(["--stop-hook"] if client in HOOK_FILES else []),
            codex_home=home,
        )
    section = readme_section()
    shown = re.findall(r"`([^`\n]+)`:\n```(json|toml)\n(.*?)\n```", section, re.S)
    paths = {path for path, _, _ in shown}
    assert paths == {
        ".mcp.json",
        ".cursor/mcp.json",
        ".vscode/mcp.json",
        "~/.codex/config.toml",
        ".claude/settings.json",
        ".cursor/hooks.json",
    }
    for path, language, block in shown:
        real = home / "config.toml" if path == "~/.codex/config.toml" else project / path
        written = real.read_text("utf-8")
        if language == "json":
            assert json.loads(block) == json.loads(written), path
        else:
            assert tomllib.loads(block) == tomllib.loads(written), path
    for folder in COMMAND_DIRS.values():
        assert f"`{folder}/`" in section
    for command in (
        "loopengt init --client claude-code --stop-hook",
        "loopengt init --client cursor --stop-hook",
        "loopengt init --client vscode",
        "loopengt init --client codex",
        "--write-home",
        "loopengt hook stop",
        "--max-loops",
    ):
        assert command in section, command
    for name in PROMPTS:
        assert f"/{name}" in section, name
