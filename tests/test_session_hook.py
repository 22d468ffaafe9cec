"""`loopengt hook session`: after a compaction or in a new session, the live run goes back into the agent's
context, in each client's format; the `drive_run` prompt and the run's context resource give the same text.

The payloads are the fixtures in tests/fixtures/hooks/<client>/ (their project path replaced by the test's).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hook_helpers import git_project, payload, project_runs
from mcp import Client
from mcp_helpers import LOOPENGT, assert_no_traceback, ok, server_env, stdio_client, step

from loopengt_core.service.reading import RunReader
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore
from loopengt_server.hooks import run_hook
from loopengt_server.mcp.run_context import MAX_CONTEXT_CHARS, store_context


def _context(text: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": text}}


# client -> (its SessionStart payload, the answer carrying the text, what it prints with no run)
SESSIONS: dict[str, tuple[str, Any, Any]] = {
    "claude-code": ("claude-code/session_compact.json", _context, None),
    "codex": ("codex/session_compact.json", _context, None),
    "vscode": ("vscode/session_start.json", _context, None),
    "cursor": ("cursor/session_start.json", lambda text: {"additional_context": text}, {}),
}

SPEC: dict[str, Any] = {
    "name": "resumable",
    "goal": "Make the parser accept trailing commas",
    "agents": [{"name": "coder"}, {"name": "reviewer"}],
    "steps": [
        {
            "name": "implement",
            "agent": "coder",
            "prompt_template": "Change the parser: {goal}.",
            "output_schema": {"type": "object", "required": ["summary"]},
            "verification_gates": ["has_summary"],
        },
        {
            "name": "review",
            "agent": "reviewer",
            "prompt_template": "Review the parser change. " + "Check every edge case carefully. " * 150,
            "dependencies": [{"step_name": "implement"}],
        },
    ],
    "policy": {
        "max_turns": 8,
        "verification_gates": [{"name": "has_summary", "condition": "length(output.summary || '') > `0`"}],
    },
}


def hook(kind: str, data: dict[str, Any], *args: str, cwd: Path) -> tuple[Any, str]:
    """`loopengt hook KIND ARGS` as the editor runs it: (parsed stdout or None, stderr)."""
    done = subprocess.run(
        [str(LOOPENGT), "hook", kind, *args],
        input=json.dumps(data).encode(),
        capture_output=True,
        cwd=cwd,
        env={**os.environ, **server_env()},
        timeout=60,
        check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert_no_traceback(out + err)
    return (json.loads(out) if out.strip() else None), err


def quick(data: dict[str, Any] | bytes, kind: str = "session", **options: Any) -> tuple[Any, str]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    out, err = io.StringIO(), io.StringIO()
    assert run_hook(kind, io.BytesIO(raw), out, err, **options) == 0  # type: ignore[arg-type]
    return (json.loads(out.getvalue()) if out.getvalue().strip() else None), err.getvalue()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return git_project(tmp_path)


@pytest.fixture
def runs(project: Path) -> Iterator[Runs]:
    yield from project_runs(project)


def context_of(project: Path, run_id: str) -> str:
    store = FileStore(project / ".loopengt")
    try:
        return store_context(RunReader(store), run_id)
    finally:
        store.close()


# --- each client --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_a_session_start_gets_the_live_run_back(name: str, runs: Runs, project: Path) -> None:
    fixture, carry, nothing = SESSIONS[name]
    assert hook("session", payload(fixture, project), cwd=project) == (nothing, ""), "no store: nothing"
    runs.start_run(spec=SPEC, run_id="resumable")
    runs.step("resumable", "implement#1", {"summary": "trailing commas parse"})
    text = context_of(project, "resumable")
    assert hook("session", payload(fixture, project), cwd=project) == (carry(text), "")
    runs.cancel_run("resumable", "done for today")
    assert hook("session", payload(fixture, project), cwd=project) == (nothing, "")


def test_the_context_says_where_the_run_stands_in_at_most_2000_characters(runs: Runs, project: Path) -> None:
    runs.start_run(spec=SPEC, run_id="resumable")
    rejected = runs.step("resumable", "implement#1", {"summary": ""})
    assert [(g.name, g.passed) for g in rejected.gate_results][-1] == ("has_summary", False)
    runs.step("resumable", "implement#2", {"summary": "trailing commas parse"})
    text = context_of(project, "resumable")
    assert len(text) <= MAX_CONTEXT_CHARS
    lines = text.splitlines()
    assert lines[0].startswith("loopengt run 'resumable' (loop 'resumable') is running, turn 2 of at most 8.")
    assert "Goal: Make the parser accept trailing commas" in lines
    assert (
        "Next: Do task 'review#1' as its instructions say, then submit the result with "
        "step(run_id='resumable', task_id='review#1', output=...)."
    ) in lines
    assert "Done: implement" in lines
    assert "Last gates (implement#2): output_schema passed; has_summary passed" in lines
    assert "Open tasks:" in lines
    [task] = [line for line in lines if line.startswith("- review#1 ")]
    assert task.startswith("- review#1 (step 'review', agent 'reviewer', attempt 1): ")
    assert task.endswith(" [...]"), "the long instructions are cut to fit"
    assert lines[-1] == (
        "get_run(run_id='resumable') has the whole run; never declare the work done yourself."
    )


@pytest.mark.parametrize("client", ["claude-code", "codex"])
def test_this_sessions_own_run_comes_first(client: str, runs: Runs, project: Path) -> None:
    """After a compaction the session gets back the run it drives, not the newest one."""
    runs.start_run(spec=SPEC, run_id="mine")
    stopped = quick(payload(f"{client}/stop.json", project), "stop")[0]
    assert stopped["decision"] == "block", "this session now drives 'mine'"
    runs.start_run(spec=SPEC, run_id="newer")  # updated later: the newest
    compact = payload(f"{client}/session_compact.json", project)
    assert quick(compact)[0] == _context(context_of(project, "mine"))
    other = payload(f"{client}/session_compact.json", project, session_id="a-new-session")
    assert quick(other)[0] == _context(context_of(project, "newer"))


def test_a_run_waiting_for_a_person_is_live_too(runs: Runs, project: Path) -> None:
    spec = {
        **SPEC,
        "steps": SPEC["steps"][:1],
        "policy": {"verification_gates": [{"name": "has_summary", "approval": True}]},
    }
    runs.start_run(spec=spec, run_id="waits")
    assert runs.step("waits", "implement#1", {"summary": "done"}).status == "waiting_approval"
    text = context_of(project, "waits")
    assert "is waiting_approval" in text
    assert "Last gates (implement#1): output_schema passed; has_summary waits for a person" in text
    assert quick(payload("vscode/session_start.json", project))[0] == _context(text)


def test_a_stop_payload_is_not_a_session_payload(runs: Runs, project: Path) -> None:
    runs.start_run(spec=SPEC, run_id="resumable")
    decision, note = quick(payload("claude-code/stop.json", project))
    assert decision is None
    assert note == (
        "loopengt hook session: a 'Stop' payload of Claude Code is for `loopengt hook stop`, not `hook session`\n"
    )
    decision, note = quick(payload("claude-code/session_compact.json", project), "stop")
    assert decision is None
    assert "is for `loopengt hook session`, not `hook stop`" in note


def test_unknown_payloads_and_clients_let_the_agent_go(project: Path) -> None:
    for raw in (b"", b"not json", b"[1]", json.dumps({"hook_event_name": "PreToolUse"}).encode()):
        decision, note = quick(raw)
        assert decision is None
        assert note.startswith("loopengt hook session: ")
        assert note.count("\n") == 1, note
    decision, note = quick(payload("cursor/session_start.json", project), client="antigravity")
    assert decision is None
    assert note == (
        "loopengt hook session: --client 'antigravity' has no hooks; use one of claude-code, cursor, vscode, codex\n"
    )


def test_an_explicit_client_reads_its_payload(runs: Runs, project: Path) -> None:
    runs.start_run(spec=SPEC, run_id="resumable")
    data = payload("codex/session_compact.json", project)
    assert quick(data, client="codex")[0] == _context(context_of(project, "resumable"))
    decision, note = quick(data, client="cursor")
    assert decision == {}, "Cursor's answer that lets it go"
    assert note == "loopengt hook session: not a Cursor hook payload (hook_event_name is 'SessionStart')\n"


# --- the same text without hooks: the drive_run prompt and the run's context resource ------------------------


@pytest.fixture
async def client(project: Path) -> AsyncIterator[Client]:
    async with stdio_client(project / ".loopengt", project, "auto") as connected:
        yield connected


@pytest.mark.anyio
async def test_drive_run_and_the_context_resource_carry_the_same_text(client: Client, project: Path) -> None:
    ok(await client.call_tool("start_run", {"spec": SPEC, "run_id": "resumable"}))
    ok(await step(client, "resumable", "implement#1", {"summary": "trailing commas parse"}))
    text = context_of(project, "resumable")
    resource = await client.read_resource("loopengt://runs/resumable/context")
    assert [c.text for c in resource.contents] == [text]  # type: ignore[union-attr]
    prompt = await client.get_prompt("drive_run", {"run_id": "resumable"})
    [message] = prompt.messages
    body = message.content.text  # type: ignore[union-attr]
    assert body.startswith("Drive the loopengt run `resumable` to its end.")
    assert body.endswith(f"\n\nWhere the run stands now:\n{text}\n")
    missing = await client.get_prompt("drive_run", {"run_id": "nope"})
    assert "no run 'nope' in the store at" in missing.messages[0].content.text  # type: ignore[union-attr]
