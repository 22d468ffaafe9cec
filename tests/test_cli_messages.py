"""The CLI speaks to a person: one-line usage errors, `--version`, CLI commands instead of MCP tool calls,
correct plurals, and `show --trace --json` as one JSON document. Each runs the real `loopengt` script."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import run_cli

from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore
from loopengt_server.present.wording import TOOL_CALL, for_person, plural

SPEC: dict[str, Any] = {
    "name": "talk",
    "goal": "Say something",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "one", "agent": "a", "verification_gates": ["ok"]},
        {"name": "two", "agent": "a", "dependencies": ["one"], "verification_gates": ["sign_off"]},
    ],
    "policy": {
        "max_turns": 6,
        "retry": {"max_retries": 1, "initial_delay_seconds": 0},
        "verification_gates": [
            {"name": "ok", "condition": "output.ok"},
            {"name": "sign_off", "approval": True},
        ],
    },
}
FAN_OUT: dict[str, Any] = {
    "name": "fan",
    "goal": "Two at once",
    "pattern": "parallel_fan_out",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": "left", "agent": "a"}, {"name": "right", "agent": "a"}],
    "policy": {"retry": {"max_retries": 0}, "fail_fast": True},
}

BLOCKED: dict[str, Any] = {
    "name": "blocked",
    "goal": "Check with a program that is not installed",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": "one", "agent": "a", "verification_gates": ["tests"]}],
    "policy": {"verification_gates": [{"name": "tests", "command": ["lgt-no-such-test-program"]}]},
}


def one_line_usage_error(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("loopengt: ")
    assert line.endswith(f"(try '{command} --help')")
    assert not set("╭╰│─") & set(line)
    return line


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    done = run_cli("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"loopengt {version('loopengt')}\n"
    assert version("loopengt") == "0.2.0"


def test_usage_errors_are_one_line_with_where_to_look(tmp_path: Path) -> None:
    assert "no such option: --bogus" in one_line_usage_error(
        run_cli("run", "--bogus", cwd=tmp_path), "loopengt run"
    )
    assert "no such option: --nope" in one_line_usage_error(run_cli("--nope", cwd=tmp_path), "loopengt")
    assert "missing argument 'run_id'" in one_line_usage_error(run_cli("show", cwd=tmp_path), "loopengt show")
    assert "missing option '--older-than'" in one_line_usage_error(
        run_cli("prune", cwd=tmp_path), "loopengt prune"
    )
    assert "'--limit'" in one_line_usage_error(
        run_cli("runs", "--limit", "many", cwd=tmp_path), "loopengt runs"
    )
    assert "no such command" in one_line_usage_error(run_cli("hook", "go", cwd=tmp_path), "loopengt hook")
    helped = run_cli("--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "Usage" in helped.stdout


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def started(store: Path, tmp_path: Path, spec: dict[str, Any], run_id: str) -> Runs:
    runs = Runs(FileStore(store), cwd=tmp_path)
    runs.start_run(spec=spec, run_id=run_id)
    return runs


def test_show_trace_json_is_one_json_document(store: Path, tmp_path: Path) -> None:
    runs = started(store, tmp_path, SPEC, "traced")
    runs.step("traced", "one#1", {"ok": True})
    done = run_cli("show", "traced", "--trace", "--json", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["run_id"] == "traced"
    assert doc["status"] == "running"
    assert [e["seq"] for e in doc["trace"]] == list(range(1, len(doc["trace"]) + 1))
    assert doc["trace"][0]["type"] == "run_started"
    assert "gate_passed" in [e["type"] for e in doc["trace"]]
    plain = json.loads(run_cli("show", "traced", "--json", "--store", str(store), cwd=tmp_path).stdout)
    assert "trace" not in plain
    assert plain["run_id"] == "traced"


def next_actions(store: Path, tmp_path: Path) -> list[str]:
    """The next_action of a run in each state the core words differently."""
    texts = []
    runs = started(store, tmp_path, SPEC, "states")
    texts.append(runs.get_run("states").next_action)  # one open task
    runs.step("states", "one#1", {"ok": True})
    texts.append(runs.get_run("states").next_action)  # the next task
    runs.step("states", "two#1", {"done": 1})
    texts.append(runs.get_run("states").next_action)  # waiting for approval
    runs.cancel_run("states", "enough")
    texts.append(runs.get_run("states").next_action)
    started(store, tmp_path, FAN_OUT, "fan")
    texts.append(runs.get_run("fan").next_action)  # several open tasks
    runs.step("fan", "left#1", None, outcome="failure", error="no")
    assert runs.get_run("fan").status == "failed"
    texts.append(runs.get_run("fan").next_action)  # failed
    spec_file = tmp_path / "blocked.yaml"
    spec_file.write_text(yaml.safe_dump(BLOCKED), encoding="utf-8")
    runs.start_run(spec_path=str(spec_file), run_id="blocked")
    runs.step("blocked", "one#1", {"ok": True})
    assert runs.get_run("blocked").status == "paused"
    texts.append(runs.get_run("blocked").next_action)  # paused for a person: a gate program is missing
    return texts


def test_cli_wording_names_commands_not_tools(store: Path, tmp_path: Path) -> None:
    texts = next_actions(store, tmp_path)
    assert any("step(" in t for t in texts)
    assert any("get_run" in t for t in texts)
    for text in texts:
        person = for_person(text)
        assert TOOL_CALL.search(person) is None, person
    waiting = for_person(texts[2])
    assert "You cannot approve it" not in waiting
    assert "loopengt approve states" in waiting
    assert "loopengt run --resume states --agent CMD" in for_person(texts[0])
    paused = for_person(texts[-1])
    assert "`loopengt resume blocked`" in paused
    assert "An agent" not in paused
    runs = Runs(FileStore(store), cwd=tmp_path)
    with pytest.raises(LoopengtError) as refused:
        runs.resume("states", worktree=str(tmp_path / "wt"))
    assert TOOL_CALL.search(for_person(refused.value.message)) is None
    assert "loopengt checkpoint RUN_ID" in for_person(refused.value.message)


def test_cli_output_speaks_to_a_person(store: Path, tmp_path: Path) -> None:
    runs = started(store, tmp_path, SPEC, "talk")
    runs.step("talk", "one#1", {"ok": True})
    runs.step("talk", "two#1", {"done": 1})
    shown = run_cli("show", "talk", "--store", str(store), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "step one: completed (1 attempt)\n" in shown.stdout
    assert "loopengt approve talk" in shown.stdout
    assert TOOL_CALL.search(shown.stdout) is None, shown.stdout
    missing = run_cli("show", "nope", "--store", str(store), cwd=tmp_path)
    assert missing.returncode == 1
    assert (
        missing.stderr == "loopengt: no run 'nope' in this store; `loopengt runs` lists the runs there are\n"
    )
    approved = run_cli("approve", "talk", "--store", str(store), cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    assert TOOL_CALL.search(approved.stdout) is None, approved.stdout


def test_plurals(tmp_path: Path) -> None:
    assert [plural(n, "turn") for n in (0, 1, 2)] == ["0 turns", "1 turn", "2 turns"]
    spec = tmp_path / "loop.yaml"
    spec.write_text(yaml.safe_dump({**FAN_OUT, "steps": FAN_OUT["steps"][:1]}))
    checked = run_cli("validate", str(spec), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == "valid: loop 'fan' (parallel_fan_out, 1 step, 1 agent, 0 gates)\n"
