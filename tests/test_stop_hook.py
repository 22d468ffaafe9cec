"""`loopengt hook stop`: Claude Code's Stop and Cursor's stop hook keep the agent on a run's open tasks.

The payloads are the fixtures in tests/fixtures/hooks/ (their project path replaced by the test's). The
scripted session drives a run through the real MCP server over stdio while the hook, a subprocess as
the editor would start it, reads the same store.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hook_helpers import git_project, loopengt, payload, project_runs
from mcp import Client
from mcp_helpers import LOOPENGT, assert_no_traceback, ok, server_env, stdio_client, step

from loopengt_core.engine.view import RunView
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore
from loopengt_server.hooks import ADOPTION_IDLE_SECONDS, run_hook, run_stop_hook


def _claude_block(reason: str) -> dict[str, Any]:
    return {"decision": "block", "reason": reason}


# client -> (first Stop payload, a Stop in the same cycle, how it is told to go on, what lets it stop)
CLIENTS: dict[str, tuple[str, str, Callable[[str], Any], Any]] = {
    "claude-code": ("claude-code/stop.json", "claude-code/stop_active.json", _claude_block, None),
    "codex": ("codex/stop.json", "codex/stop_active.json", _claude_block, None),
    "cursor": ("cursor/stop.json", "cursor/stop_followup.json", lambda r: {"followup_message": r}, {}),
    "vscode": (
        "vscode/stop.json",
        "vscode/stop_active.json",
        lambda r: {"hookSpecificOutput": {"hookEventName": "Stop", **_claude_block(r)}},
        None,
    ),
}
TAIL = "\n\nIf you cannot do a task, submit it with outcome 'failure' and an error that says why."

SPEC: dict[str, Any] = {
    "name": "hooked",
    "goal": "Make the tests pass",
    "pattern": "sequential",
    "agents": [
        {"name": "coder", "system_prompt": "You are a careful engineer."},
        {"name": "reviewer", "system_prompt": "You review changes."},
    ],
    "steps": [
        {
            "name": "implement",
            "agent": "coder",
            "prompt_template": "Fix the failing tests: {goal}.",
            "output_schema": {
                "type": "object",
                "required": ["summary"],
                "properties": {"summary": {"type": "string"}},
            },
            "verification_gates": ["has_summary"],
        },
        {
            "name": "review",
            "agent": "reviewer",
            "prompt_template": "Review the fix for: {goal}.",
            "dependencies": [{"step_name": "implement"}],
            "verification_gates": ["sign_off"],
        },
    ],
    "policy": {
        "max_turns": 6,
        "retry": {"max_retries": 2, "initial_delay_seconds": 0},
        "verification_gates": [
            {"name": "has_summary", "condition": "length(output.summary || '') > `0`"},
            {"name": "sign_off", "approval": True, "prompt": "Ship it?"},
        ],
    },
}

STEPS_SPEC: dict[str, Any] = {
    "name": "four-steps",
    "goal": "Do four things",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": n, "agent": "a", "prompt_template": f"Do {n}."} for n in ("one", "two", "three", "four")
    ],
    "policy": {"max_turns": 10},
}


def hook(data: dict[str, Any] | bytes, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`loopengt hook stop ARGS` as the editor runs it: the payload on stdin."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    done = subprocess.run(
        [str(LOOPENGT), "hook", "stop", *args],
        input=raw,
        capture_output=True,
        cwd=cwd,
        env={**os.environ, **server_env()},
        timeout=60,
        check=False,
    )
    result = subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result.stdout + result.stderr)
    return result


def answer(data: dict[str, Any] | bytes, *args: str, cwd: Path) -> Any:
    """The hook's stdout, parsed; None when it printed nothing (Claude Code: allowed to stop)."""
    out = hook(data, *args, cwd=cwd).stdout
    return json.loads(out) if out.strip() else None


def quick(data: dict[str, Any] | bytes, *, store: str | None = None, max_loops: int = 5) -> tuple[Any, str]:
    """The hook in this process (fast), for the loop-guard rules: (parsed stdout or None, stderr)."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    out, err = io.StringIO(), io.StringIO()
    assert run_stop_hook(io.BytesIO(raw), out, err, store=store, max_loops=max_loops) == 0
    return (json.loads(out.getvalue()) if out.getvalue().strip() else None), err.getvalue()


def session(data: dict[str, Any]) -> tuple[Any, str]:
    """`loopengt hook session` in this process: (parsed stdout or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    assert run_hook("session", io.BytesIO(json.dumps(data).encode()), out, err) == 0
    return (json.loads(out.getvalue()) if out.getvalue().strip() else None), err.getvalue()


def reason_for(view: dict[str, Any] | RunView, max_turns: int) -> str:
    """The continuation text, built the way the hook documents it, from a RunView."""
    v = view if isinstance(view, dict) else view.model_dump()
    text = (
        f"loopengt run '{v['run_id']}' ({v['loop']}) is still running, turn {v['turn']} of at most {max_turns}: "
        f"do not stop yet.\nNext: {v['next_action']}"
    )
    for task in v["tasks"]:
        text += (
            f"\n\nTask '{task['task_id']}' (step '{task['step']}', agent '{task['agent']}', "
            f"attempt {task['attempt']}):\n{task['instructions']}"
        )
        if task["feedback"]:
            text += f"\nFeedback from the last attempt:\n{task['feedback']}"
        if task["output_schema"]:
            text += "\nOutput schema: " + json.dumps(task["output_schema"], separators=(",", ":"))
    return text + TAIL


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return git_project(tmp_path)


@pytest.fixture
def runs(project: Path) -> Iterator[Runs]:
    yield from project_runs(project)


# --- the scripted session: a real MCP server over stdio, the hook as a subprocess -------------------------


@pytest.fixture
async def client(project: Path) -> AsyncIterator[Client]:
    async with stdio_client(project / ".loopengt", project, "auto") as connected:
        yield connected


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(CLIENTS))
async def test_a_session_blocks_with_the_open_task_until_the_run_waits_or_ends(
    name: str, client: Client, project: Path
) -> None:
    """Each client's recorded Stop payloads, answered in its format, through a whole run."""
    first_stop, again_stop, block, allow = CLIENTS[name]
    stop = payload(first_stop, project)
    stop_again = payload(again_stop, project)

    # no store yet: nothing to continue
    assert answer(stop, cwd=project) == allow

    view = ok(await client.call_tool("start_run", {"spec": SPEC, "run_id": "hooked"}))
    [task] = view["tasks"]
    assert task["task_id"] == "implement#1"
    first = reason_for(view, 6)
    assert first.startswith(
        "loopengt run 'hooked' (hooked) is still running, turn 0 of at most 6: do not stop yet.\n"
        "Next: Do task 'implement#1' as its instructions say, then submit the result with "
        "step(run_id='hooked', task_id='implement#1', output=...).\n\n"
        "Task 'implement#1' (step 'implement', agent 'coder', attempt 1):\n"
    )
    assert "Fix the failing tests: Make the tests pass." in task["instructions"]
    assert first.endswith(
        'Output schema: {"type":"object","required":["summary"],"properties":{"summary":{"type":"string"}}}'
        + TAIL
    )

    # the agent wants to stop while implement#1 is open: it is told to go on, naming the task
    assert answer(stop, cwd=project) == block(first)
    # stopping again without doing anything: the hook does not insist
    assert answer(stop_again, cwd=project) == allow

    # progress (implement#1 submitted, review#1 open): in the same stop cycle it blocks again
    view = ok(await step(client, "hooked", "implement#1", {"summary": "fixed the parser"}))
    assert [t["task_id"] for t in view["tasks"]] == ["review#1"]
    second = reason_for(view, 6)
    assert "turn 1 of at most 6" in second
    assert "Task 'review#1' (step 'review', agent 'reviewer', attempt 1):" in second
    assert answer(stop_again, cwd=project) == block(second)

    # the run waits for a person: never blocked, whatever the loop guard says
    view = ok(await step(client, "hooked", "review#1", "looks right"))
    assert view["status"] == "waiting_approval"
    assert answer(stop_again, cwd=project) == allow
    assert answer(stop, cwd=project) == allow

    # a person approves; the run completes and the same payloads may stop
    loopengt("approve", "hooked", project=project)
    final = ok(await client.call_tool("get_run", {"run_id": "hooked"}))
    assert final["status"] == "completed"
    assert answer(stop, cwd=project) == allow
    assert answer(stop_again, cwd=project) == allow


# --- the loop guards ------------------------------------------------------------------------------------


def test_claude_code_blocks_at_most_max_loops_times_in_a_row(runs: Runs, project: Path) -> None:
    view = runs.start_run(spec=STEPS_SPEC, run_id="four")
    first = payload("claude-code/stop.json", project)
    again = payload("claude-code/stop_active.json", project)
    assert quick(first, max_loops=2)[0] == {"decision": "block", "reason": reason_for(view, 10)}
    view = runs.step("four", "one#1", "done")
    assert quick(again, max_loops=2)[0] == {"decision": "block", "reason": reason_for(view, 10)}
    runs.step("four", "two#1", "done")
    assert quick(again, max_loops=2)[0] is None, "a third block in a row is one too many"
    # a new stop cycle (the person wrote again) starts counting afresh
    view = runs.get_run("four")
    assert quick(first, max_loops=2)[0] == {"decision": "block", "reason": reason_for(view, 10)}


# --- guard rails from the Ralph-loop plugin's bug reports ---------------------------------------------------


def test_another_session_is_not_held_on_a_run_another_session_drives(runs: Runs, project: Path) -> None:
    """anthropics/claude-plugins-official#844 and its kin: a loop must not trap unrelated sessions."""
    view = runs.start_run(spec=STEPS_SPEC, run_id="four")
    expected = {"decision": "block", "reason": reason_for(view, 10)}
    assert quick(payload("claude-code/stop.json", project))[0] == expected  # this session adopts the run
    other = payload("claude-code/stop.json", project, session_id="another-session")
    assert quick(other) == (None, "")
    assert quick(payload("cursor/stop.json", project)) == ({}, "")
    # the driving session is gone (it has not stopped for a while): another one may take the run over
    adopted = project / ".loopengt" / "hooks" / "run-four.json"
    state = json.loads(adopted.read_text("utf-8"))
    adopted.write_text(json.dumps({**state, "seen": state["seen"] - ADOPTION_IDLE_SECONDS - 1}), "utf-8")
    assert quick(other)[0] == expected
    assert quick(payload("claude-code/stop.json", project))[0] is None, "now the other session drives it"


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("claude-code/stop.json", {"session_id": ""}),
        ("claude-code/stop.json", {"session_id": None}),
        ("codex/stop.json", {"session_id": ""}),
        ("vscode/stop.json", {"sessionId": ""}),
        ("cursor/stop.json", {"conversation_id": ""}),
    ],
)
def test_a_payload_without_a_session_id_never_holds_the_agent(
    name: str, change: dict[str, Any], runs: Runs, project: Path
) -> None:
    runs.start_run(spec=STEPS_SPEC, run_id="four")
    decision, note = quick(payload(name, project, **change))
    assert decision in (None, {})
    assert note == (
        "loopengt hook stop: no session id in the payload: a loop that cannot tell sessions apart would hold "
        "them all\n"
    )
    assert not (project / ".loopengt" / "hooks").exists(), "nothing adopted the run"


def test_no_active_run_means_no_block_and_no_message(runs: Runs, project: Path) -> None:
    """#574, #897: a hook with nothing to do is silent."""
    for name, allow in (
        ("claude-code/stop.json", None),
        ("cursor/stop.json", {}),
        ("vscode/stop.json", None),
    ):
        assert quick(payload(name, project)) == (allow, "")  # no store at all
    runs.start_run(spec=STEPS_SPEC, run_id="done")
    runs.cancel_run("done", "not needed")
    for name, allow in (("codex/stop.json", None), ("cursor/stop_followup.json", {})):
        assert quick(payload(name, project)) == (allow, "")


def test_loopengt_cancel_stops_the_continuation_at_once(runs: Runs, project: Path) -> None:
    """oh-my-claudecode#1299: cancelling must end the loop on the very next stop."""
    runs.start_run(spec=STEPS_SPEC, run_id="four")
    assert quick(payload("claude-code/stop.json", project))[0] is not None
    loopengt("cancel", "four", project=project)
    assert answer(payload("claude-code/stop.json", project), cwd=project) is None
    assert answer(payload("claude-code/stop_active.json", project), cwd=project) is None


def _run_files(project: Path) -> dict[str, tuple[bytes, int]]:
    runs_dir = project / ".loopengt" / "runs"
    return {
        str(p.relative_to(runs_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in runs_dir.rglob("*")
        if p.is_file()
    }


def test_the_hooks_never_change_a_run(runs: Runs, project: Path) -> None:
    """Only the hook's own files under .loopengt/hooks/ are written, even for a run whose task has expired
    (reading it through Runs would append the expiry)."""
    spec = {
        **STEPS_SPEC,
        "steps": [{**STEPS_SPEC["steps"][0], "timeout_seconds": 0.01}, *STEPS_SPEC["steps"][1:]],
    }
    runs.start_run(spec=STEPS_SPEC, run_id="four")
    runs.start_run(spec=spec, run_id="expiring")
    before = _run_files(project)
    time.sleep(0.05)
    for name in (
        "claude-code/stop.json",
        "claude-code/stop_active.json",
        "cursor/stop.json",
        "vscode/stop.json",
    ):
        quick(payload(name, project))
    for name in (
        "claude-code/session_compact.json",
        "cursor/session_start.json",
        "vscode/session_start.json",
    ):
        session(payload(name, project))
    assert _run_files(project) == before


def test_cursor_loop_count_at_the_limit_lets_it_stop(runs: Runs, project: Path) -> None:
    view = runs.start_run(spec=STEPS_SPEC, run_id="four")
    expected = {"followup_message": reason_for(view, 10)}
    assert quick(payload("cursor/stop.json", project))[0] == expected
    assert quick(payload("cursor/stop_loop_limit.json", project))[0] == {}
    runs.step("four", "one#1", "done")
    assert quick(payload("cursor/stop_followup.json", project), max_loops=1)[0] == {}
    view = runs.get_run("four")
    assert quick(payload("cursor/stop_followup.json", project), max_loops=2)[0] == {
        "followup_message": reason_for(view, 10)
    }


def test_cursor_aborted_or_failed_turns_are_never_continued(runs: Runs, project: Path) -> None:
    runs.start_run(spec=STEPS_SPEC, run_id="four")
    assert quick(payload("cursor/stop_aborted.json", project))[0] == {}
    assert quick(payload("cursor/stop.json", project, status="error"))[0] == {}


def test_cursor_payload_with_a_byte_order_mark(runs: Runs, project: Path) -> None:
    view = runs.start_run(spec=STEPS_SPEC, run_id="four")
    raw = b"\xef\xbb\xbf" + json.dumps(payload("cursor/stop.json", project)).encode()
    assert quick(raw)[0] == {"followup_message": reason_for(view, 10)}


# --- which run, which store -----------------------------------------------------------------------------


def test_the_most_recently_updated_active_run_wins(runs: Runs, project: Path) -> None:
    runs.start_run(spec=STEPS_SPEC, run_id="older")
    runs.start_run(spec=STEPS_SPEC, run_id="newer")
    done = runs.start_run(spec=STEPS_SPEC, run_id="cancelled")
    runs.cancel_run(done.run_id, "not needed")
    view = runs.step("older", "one#1", "done")  # older was started first but changed last
    assert quick(payload("claude-code/stop.json", project))[0] == {
        "decision": "block",
        "reason": reason_for(view, 10),
    }


def test_ended_runs_are_not_continued(runs: Runs, project: Path) -> None:
    runs.start_run(spec=STEPS_SPEC, run_id="four")
    runs.cancel_run("four", "enough")
    assert quick(payload("claude-code/stop.json", project))[0] is None
    assert quick(payload("cursor/stop.json", project))[0] == {}


def test_the_store_is_found_from_a_subfolder_but_not_above_the_repository(runs: Runs, project: Path) -> None:
    view = runs.start_run(spec=STEPS_SPEC, run_id="four")
    sub = project / "src" / "pkg"
    sub.mkdir(parents=True)
    assert quick(payload("claude-code/stop.json", project, cwd=str(sub)))[0] == {
        "decision": "block",
        "reason": reason_for(view, 10),
    }
    inner = project / "vendored"
    (inner / ".git").mkdir(parents=True)
    assert quick(payload("claude-code/stop.json", project, cwd=str(inner)))[0] is None


def test_an_explicit_store(runs: Runs, project: Path, tmp_path: Path) -> None:
    view = runs.start_run(spec=STEPS_SPEC, run_id="four")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = payload("claude-code/stop.json", project, cwd=str(elsewhere))
    assert quick(data)[0] is None
    assert quick(data, store=str(project / ".loopengt"))[0] == {
        "decision": "block",
        "reason": reason_for(view, 10),
    }
    decision, note = quick(data, store="no-such-store")
    assert decision is None
    assert "no loopengt store" in note


# --- failures never trap the agent ----------------------------------------------------------------------


def test_an_unreadable_payload_allows_the_stop(project: Path) -> None:
    for raw in (b"", b"not json", b"[1, 2]", json.dumps({"hook_event_name": "PreToolUse"}).encode()):
        result = hook(raw, cwd=project)
        assert result.stdout == ""
        assert result.stderr.startswith("loopengt hook stop: "), result.stderr


def test_a_broken_store_allows_the_stop(project: Path) -> None:
    data = payload("claude-code/stop.json", project)
    result = hook(data, "--store", "postgresql://someone:s3cret@127.0.0.1:1/nowhere", cwd=project)
    assert result.stdout == ""
    assert "could not read the loopengt store" in result.stderr
    assert "s3cret" not in result.stderr
    cursor = hook(payload("cursor/stop.json", project), "--store", "postgresql://127.0.0.1:1/x", cwd=project)
    assert json.loads(cursor.stdout) == {}


def test_a_corrupt_run_is_skipped(runs: Runs, project: Path) -> None:
    runs.start_run(spec=STEPS_SPEC, run_id="four")
    events = project / ".loopengt" / "runs" / "four" / "events.jsonl"
    events.write_text("{broken\n" + events.read_text("utf-8"), encoding="utf-8")
    snapshot = events.with_name("snapshot.json")
    if snapshot.exists():
        snapshot.unlink()
    result = hook(payload("claude-code/stop.json", project), cwd=project)
    assert result.stdout == ""


def test_while_a_gate_checks_the_submission_the_hook_says_wait_not_resubmit(project: Path) -> None:
    """Issue 14: a stop during a long gate is told to wait with get_run(wait_seconds), not to submit again."""
    store = FileStore(project / ".loopengt")
    runs = Runs(store, cwd=project, call_wait=1, allow_inline_commands=True)
    spec = {
        **STEPS_SPEC,
        "steps": [{"name": "one", "agent": "a", "verification_gates": ["tests"]}],
        "policy": {
            "max_turns": 10,
            "verification_gates": [{"name": "tests", "command": ["sleep", "3"]}],
        },
        "workspace": "none",
    }
    run_id = runs.start_run(spec=spec, run_id="checking").run_id
    assert runs.step(run_id, "one#1", "done").checking
    found, _ = quick(payload("claude-code/stop.json", project))
    assert found["decision"] == "block"
    reason = found["reason"]
    assert "is checking your submission" in reason
    assert "gate 'tests'" in reason
    assert f"get_run(run_id='{run_id}', wait_seconds=" in reason
    assert "do not submit again" in reason
    assert runs.stop_commands(run_id, "the test") == 1
    store.close()
