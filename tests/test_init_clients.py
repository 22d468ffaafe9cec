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
from loopengt_server.clients import CLIENTS, HOOK_CLIENTS, readme_table
from loopengt_server.mcp.prompts import load_prompt_files

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
HOOK_FILES = {
    "claude-code": ".claude/settings.json",
    "cursor": ".cursor/hooks.json",
    "vscode": ".github/hooks/loopengt.json",
}
STOP = "loopengt hook stop"
SESSION = "loopengt hook session"
SOURCES = "startup|resume|compact"


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
            "Stop": [other_stop, {"hooks": [{"type": "command", "command": STOP}]}],
            "SessionStart": [{"matcher": SOURCES, "hooks": [{"type": "command", "command": SESSION}]}],
        },
    }
    written = files(tmp_path)
    out = init(tmp_path, "--client", "claude-code", "--stop-hook")
    assert files(tmp_path) == written
    assert f"unchanged {settings}" in out


def test_cursor_stop_hook_on_an_empty_project_and_beside_others(tmp_path: Path) -> None:
    hooks = tmp_path / ".cursor" / "hooks.json"
    init(tmp_path, "--client", "cursor", "--stop-hook")
    assert read_json(hooks) == {
        "version": 1,
        "hooks": {"stop": [{"command": STOP}], "sessionStart": [{"command": SESSION}]},
    }
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
            "stop": [{"command": "./audit.sh"}, {"command": STOP}],
            "sessionStart": [{"command": SESSION}],
        },
    }
    written = files(other)
    init(other, "--client", "cursor", "--stop-hook")
    assert files(other) == written


def test_vscode_hooks_go_to_github_hooks(tmp_path: Path) -> None:
    hooks = tmp_path / ".github" / "hooks" / "loopengt.json"
    init(tmp_path, "--client", "vscode", "--stop-hook")
    assert read_json(hooks) == {
        "hooks": {
            "Stop": [{"type": "command", "command": STOP}],
            "SessionStart": [{"type": "command", "command": SESSION}],
        }
    }
    hooks.write_text(
        json.dumps({"hooks": {"PostToolUse": [{"type": "command", "command": "npx prettier --write ."}]}}),
        encoding="utf-8",
    )
    init(tmp_path, "--client", "vscode", "--stop-hook")
    assert read_json(hooks)["hooks"]["PostToolUse"] == [
        {"type": "command", "command": "npx prettier --write ."}
    ]
    assert read_json(hooks)["hooks"]["Stop"] == [{"type": "command", "command": STOP}]


def test_codex_hooks_go_to_its_home_only_with_consent(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    out = init(tmp_path / "project", "--client", "codex", "--stop-hook", codex_home=home)
    assert not home.exists()
    hooks_json = out[out.index("hooks.json (a file in your home") :]
    snippet = hooks_json[hooks_json.index("{") :]
    expected = {
        "hooks": {
            "Stop": [{"hooks": [{"type": "command", "command": STOP}]}],
            "SessionStart": [{"matcher": SOURCES, "hooks": [{"type": "command", "command": SESSION}]}],
        }
    }
    assert json.loads(snippet) == expected
    home.mkdir()
    mine = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "python3 ~/.codex/review.py"}]}]}}
    (home / "hooks.json").write_text(json.dumps(mine), encoding="utf-8")
    init(tmp_path / "project", "--client", "codex", "--stop-hook", "--write-home", codex_home=home)
    merged = read_json(home / "hooks.json")
    assert merged["hooks"]["Stop"] == [mine["hooks"]["Stop"][0], *expected["hooks"]["Stop"]]
    assert merged["hooks"]["SessionStart"] == expected["hooks"]["SessionStart"]


def test_antigravity_writes_its_mcp_config_in_the_home_with_consent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = home / ".gemini" / "antigravity" / "mcp_config.json"
    env = {"HOME": str(home)}
    result = CliRunner().invoke(app, ["init", "--client", "antigravity", "--project", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    assert not config.exists()
    assert "--write-home" in result.stdout
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"mcpServers": {"docs": {"serverUrl": "https://example.com/mcp"}}}), "utf-8")
    args = ["init", "--client", "antigravity", "--write-home", "--project", str(tmp_path)]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert read_json(config) == {
        "mcpServers": {"docs": {"serverUrl": "https://example.com/mcp"}, "loopengt": OURS}
    }
    written = config.read_bytes()
    assert CliRunner().invoke(app, args, env=env).exit_code == 0
    assert config.read_bytes() == written


@pytest.mark.parametrize("client", [*sorted(HOOK_FILES), "codex"])
def test_init_with_hooks_twice_changes_nothing_and_keeps_other_entries(client: str, tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    project = tmp_path / "project"
    relative = HOOK_FILES.get(client)
    path = home / "hooks.json" if relative is None else project / relative
    path.parent.mkdir(parents=True)
    theirs = {"hooks": {"PreToolUse": [{"type": "command", "command": "./guard.sh"}]}, "theirs": True}
    path.write_text(json.dumps(theirs), encoding="utf-8")
    init(project, "--client", client, "--stop-hook", "-y", codex_home=home)
    first = read_json(path)
    assert first["theirs"] is True
    assert first["hooks"]["PreToolUse"] == theirs["hooks"]["PreToolUse"]
    written = {**files(project), **(files(home) if home.exists() else {})}
    out = init(project, "--client", client, "--stop-hook", "-y", codex_home=home)
    assert {**files(project), **(files(home) if home.exists() else {})} == written
    assert "created" not in out
    assert "updated" not in out


def test_a_hook_with_extra_options_counts_as_registered(tmp_path: Path) -> None:
    hooks = tmp_path / ".cursor" / "hooks.json"
    hooks.parent.mkdir()
    mine = {
        "version": 1,
        "hooks": {"stop": [{"command": "loopengt hook stop --max-loops 3", "loop_limit": 3}]},
    }
    hooks.write_text(json.dumps(mine), encoding="utf-8")
    init(tmp_path, "--client", "cursor", "--stop-hook")
    assert read_json(hooks) == {**mine, "hooks": {**mine["hooks"], "sessionStart": [{"command": SESSION}]}}


def test_stop_hook_needs_a_client_that_has_one(tmp_path: Path) -> None:
    for args in (["--stop-hook"], ["--client", "antigravity", "--stop-hook"]):
        result = cli("init", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert (
            "--stop-hook needs --client claude-code or --client cursor or --client vscode or --client codex"
            in result.stderr
        )
        assert_no_traceback(result.stdout + result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_unknown_client(tmp_path: Path) -> None:
    result = cli("init", "--client", "emacs", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "unknown client 'emacs'; use one of claude-code, cursor, vscode, codex, antigravity" in result.stderr
    )
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
    codex = tmp_path / "codex-home"
    home = tmp_path / "home"
    project = tmp_path / "project"
    project.mkdir()
    env = {"CODEX_HOME": str(codex), "HOME": str(home)}
    for client in CLIENTS:
        hooks = ["--stop-hook"] if client in HOOK_CLIENTS else []
        args = ["init", "--client", client, "--write-home", *hooks, "--project", str(project)]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    homes = {"~/.codex/": codex, "~/.gemini/": home / ".gemini"}
    section = readme_section()
    shown = re.findall(r"`([^`\n]+)`:\n```(json|toml)\n(.*?)\n```", section, re.S)
    paths = {path for path, _, _ in shown}
    assert paths == {
        ".mcp.json",
        ".cursor/mcp.json",
        ".vscode/mcp.json",
        "~/.codex/config.toml",
        "~/.gemini/antigravity/mcp_config.json",
        ".claude/settings.json",
        ".cursor/hooks.json",
        ".github/hooks/loopengt.json",
        "~/.codex/hooks.json",
    }
    for path, language, block in shown:
        prefix = next((p for p in homes if path.startswith(p)), None)
        real = homes[prefix] / path.removeprefix(prefix) if prefix else project / path
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
        "loopengt init --client vscode --stop-hook",
        "loopengt init --client codex --stop-hook",
        "loopengt init --client antigravity",
        "--write-home",
        "loopengt hook stop",
        "loopengt hook session",
        "--max-loops",
    ):
        assert command in section, command
    for name in PROMPTS:
        assert f"/{name}" in section, name


def test_the_readme_table_is_the_client_records() -> None:
    assert readme_table() in readme_section()


def test_doctor_reads_the_hooks_from_the_records(tmp_path: Path) -> None:
    from loopengt_server.doctor import check_clients

    init(tmp_path, "--client", "cursor", "--stop-hook")
    checks, _ = check_clients(tmp_path)
    assert [(c.level, c.name, c.detail) for c in checks if "hooks" in c.detail] == [
        ("OK", "cursor", ".cursor/hooks.json: hooks stop, sessionStart registered")
    ]
    hooks = tmp_path / ".cursor" / "hooks.json"
    hooks.write_text(json.dumps({"version": 1, "hooks": {"stop": [{"command": STOP}]}}), encoding="utf-8")
    checks, _ = check_clients(tmp_path)
    [warning] = [c for c in checks if "hooks" in c.detail]
    assert warning.line() == (
        "WARN  cursor                 .cursor/hooks.json: `loopengt hook session` not registered"
        " -> fix: loopengt init --client cursor --stop-hook"
    )
