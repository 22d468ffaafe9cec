"""Memory across runs (`context_from`): what a task's input.memory carries, its size bound, what the log
records so a replay never reads the source runs again, and the field through the spec, `Runs.start_run`,
the MCP tool and `loopengt run --context-from`. Real file stores, a real MCP server, the real CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import assert_no_traceback, assert_tool_error, ok, run_cli, stdio_client, step

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.model.events import RunStarted, event_data
from loopengt_core.service import memory
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

TWO_STEPS: dict[str, Any] = {
    "name": "two",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": "plan", "agent": "a"}, {"name": "build", "agent": "a"}],
}


def finish(runs: Runs, run_id: str, outputs: dict[str, Any]) -> None:
    """Answer each open task with the output given for its step until the run ends."""
    view = runs.get_run(run_id)
    while view.tasks:
        task = view.tasks[0]
        runs.step(run_id, task.task_id, outputs[task.step])
        view = runs.get_run(run_id)
    assert view.status == "completed"


def entry(run_id: str, size: int, updated: str = "") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "loop": "l",
        "status": "completed",
        "seq": 9,
        "final_output": {"text": "x" * size},
        "steps": {"s": {"text": "y" * size}},
    }


# --- the size bound ---------------------------------------------------------------------------------------


def test_entries_within_the_budget_are_whole() -> None:
    entries = [entry("a", 100), entry("b", 100)]
    assert memory.bounded(entries) == entries


def test_past_the_budget_the_newest_stay_whole_and_the_older_are_shortened() -> None:
    entries = [entry(f"r{n}", 3000) for n in range(5)]  # about 6 KB each, oldest first
    bounded = memory.bounded(entries)
    assert [e["run_id"] for e in bounded] == ["r0", "r1", "r2", "r3", "r4"]
    assert bounded[3:] == entries[3:]  # two fit in 16 000 bytes, a third would not
    for older in bounded[:3]:
        assert older["shortened"] is True
        text = json.dumps({"text": "x" * 3000}, sort_keys=True)
        assert older["final_output"] == f"{text[: memory.SHORT_CHARS]}… ({len(text)} chars)"
        assert older["steps"]["s"].startswith('{"text": "yyy')
        assert older["steps"]["s"].endswith(f"… ({len(text)} chars)")
        assert (older["run_id"], older["seq"], older["status"]) == (older["run_id"], 9, "completed")
    assert sum(len(json.dumps(e)) for e in bounded) < memory.BUDGET_BYTES + 3 * 800
    assert memory.bounded(entries) == bounded  # deterministic


def test_a_newest_entry_over_the_budget_is_shortened_too_and_short_values_stay() -> None:
    huge = entry("big", 20_000)
    huge["steps"]["small"] = {"ok": True}
    (only,) = memory.bounded([huge])
    assert only["shortened"] is True
    assert only["steps"]["small"] == {"ok": True}
    assert len(only["final_output"]) < memory.SHORT_CHARS + 30


def test_context_from_values_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="context_from must be a list of run ids"):
        memory.check_context_from("run-1")
    with pytest.raises(InvalidArgument, match="invalid context_from run id 'BAD'"):
        memory.check_context_from(["BAD"])
    with pytest.raises(InvalidArgument, match="at most 20"):
        memory.check_context_from([f"r{n}" for n in range(21)])
    assert memory.check_context_from(["a", "b", "a"]) == ["a", "b"]


def test_validation_knows_context_from() -> None:
    from loopengt_core.engine.validation import SpecError, load_spec
    from loopengt_core.model.spec import json_schema

    spec = load_spec(yaml.safe_dump({**TWO_STEPS, "context_from": ["run-1", "run_2"]}))
    assert spec.context_from == ["run-1", "run_2"]
    with pytest.raises(SpecError) as bad:
        load_spec(yaml.safe_dump({**TWO_STEPS, "context_from": ["ok", "Not OK"]}))
    assert [p.location for p in bad.value.problems] == ["context_from[1]"]
    field = json_schema()["properties"]["context_from"]
    assert field["maxItems"] == memory.MAX_RUNS
    assert "input.memory" in field["description"]


# --- through the runs service -----------------------------------------------------------------------------


def test_tasks_carry_earlier_runs_outputs_and_the_log_records_what_was_read(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    first = runs.start_run(spec=TWO_STEPS, run_id="first").run_id
    finish(runs, first, {"plan": {"plan": "p1"}, "build": {"built": "b1"}})
    second = runs.start_run(spec=TWO_STEPS, run_id="second").run_id
    runs.step(second, "plan#1", {"plan": "p2"})  # still running: its plan output is its memory

    spec = {**TWO_STEPS, "name": "third", "context_from": ["first"]}
    view = runs.start_run(spec=spec, run_id="third", context_from=["second", "first"])
    task = view.tasks[0]
    seen = task.input["memory"]
    assert [e["run_id"] for e in seen] == ["first", "second"]  # oldest first
    assert seen[0] == {
        "run_id": "first",
        "loop": "two",
        "status": "completed",
        "seq": runs.store.last_seq("first"),
        "final_output": {"built": "b1"},
        "steps": {"plan": {"plan": "p1"}, "build": {"built": "b1"}},
    }
    assert seen[1]["status"] == "running"
    assert seen[1]["final_output"] is None
    assert seen[1]["steps"] == {"plan": {"plan": "p2"}}
    started = runs.store.events("third")[0]
    assert isinstance(started, RunStarted)
    assert event_data(started)["context_from"] == seen
    assert [(e["run_id"], e["seq"]) for e in started.context_from] == [
        ("first", runs.store.last_seq("first")),
        ("second", runs.store.last_seq("second")),
    ]

    # The source changes and then goes away: the run, reloaded from its own log, sees what it saw.
    runs.step(second, "build#1", {"built": "b2"})
    runs.store.delete_run("second")
    again = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    assert again.get_run("third").tasks[0].input["memory"] == seen
    answer = again.step("third", "plan#1", {"plan": "p3"})
    assert answer.tasks[0].input["memory"] == seen  # the next task too


def test_a_run_without_context_from_writes_no_memory(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    view = runs.start_run(spec=TWO_STEPS, run_id="plain")
    assert "memory" not in view.tasks[0].input
    assert "context_from" not in event_data(runs.store.events("plain")[0])
    assert "memory" not in runs.store.load("plain").events[0].model_dump(exclude_unset=True)


def test_bad_context_from_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    with pytest.raises(InvalidArgument, match="context_from: no run 'ghost' in this store"):
        runs.start_run(spec=TWO_STEPS, context_from=["ghost"])
    with pytest.raises(InvalidArgument, match="context_from names the run being started"):
        runs.start_run(spec=TWO_STEPS, run_id="me", context_from=["me"])
    with pytest.raises(InvalidArgument, match="invalid context_from run id"):
        runs.start_run(spec=TWO_STEPS, context_from=["../x"])
    assert runs.store.list_runs() == []


# --- over MCP and the CLI ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_start_run_takes_context_from_over_mcp(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(TWO_STEPS), encoding="utf-8")
    async with stdio_client(tmp_path / "store", tmp_path, "auto") as client:
        first = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml", "run_id": "first"}))
        ok(await step(client, "first", "plan#1", {"plan": "p1"}))
        ok(await step(client, "first", "build#1", {"built": "b1"}))
        assert first["run_id"] == "first"
        later = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml", "context_from": ["first"]}))
        (seen,) = later["tasks"][0]["input"]["memory"]
        assert seen["final_output"] == {"built": "b1"}
        assert seen["steps"] == {"plan": {"plan": "p1"}, "build": {"built": "b1"}}
        missing = await client.call_tool("start_run", {"spec_path": "loop.yaml", "context_from": ["nope"]})
        assert_tool_error(missing, "context_from", "'nope'")


AGENT = """
import json, sys
task = json.load(sys.stdin)
memory = task["input"].get("memory", [])
json.dump({"step": task["step"], "remembered": [e["final_output"] for e in memory]}, sys.stdout)
"""


def test_loopengt_run_takes_context_from(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(TWO_STEPS), encoding="utf-8")
    (tmp_path / "agent.py").write_text(AGENT, encoding="utf-8")
    agent = f"{sys.executable} agent.py"
    first = run_cli("run", "loop.yaml", "--agent", agent, "--run-id", "first", "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli(
        "run", "loop.yaml", "--agent", agent, "--run-id", "second", "--context-from", "first", cwd=tmp_path
    )
    assert second.returncode == 0, second.stdout + second.stderr
    runs = Runs(FileStore(tmp_path / ".loopengt"), cwd=tmp_path)
    final = runs.get_run("second").final_output
    assert final == {"step": "build", "remembered": [{"step": "build", "remembered": []}]}
    bad = run_cli("run", "loop.yaml", "--agent", agent, "--context-from", "Nope!", cwd=tmp_path)
    assert bad.returncode != 0
    assert "context_from" in bad.stderr
    assert_no_traceback(bad.stdout + bad.stderr)
