"""Approval gates through MCP: answered by elicitation (handshake-era clients that can elicit), or from the
terminal with `loopengt approve` while the server runs (clients that cannot).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_helpers import LOOPENGT, drive, ok, server_env, stdio_client, step, trace_events

pytestmark = pytest.mark.anyio

APPROVAL_SPEC: dict[str, Any] = {
    "name": "needs-approval",
    "goal": "Ship a change a person signs off",
    "pattern": "sequential",
    "agents": [{"name": "coder"}],
    "steps": [
        {"name": "implement", "agent": "coder", "verification_gates": ["has_summary", "sign_off"]},
        {"name": "announce", "agent": "coder", "dependencies": [{"step_name": "implement"}]},
    ],
    "policy": {
        "max_turns": 10,
        "retry": {"max_retries": 2, "initial_delay_seconds": 0},
        "verification_gates": [
            {"name": "has_summary", "condition": "length(output.summary || '') > `0`"},
            {"name": "sign_off", "approval": True, "prompt": "Ship this change?"},
        ],
    },
}


class Elicitor:
    """elicitation_callback: answers with the next queued content, recording what it was asked."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        self.asked: list[types.ElicitRequestParams] = []

    async def __call__(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.asked.append(params)
        assert self.answers, f"unexpected elicitation: {params.message}"
        return types.ElicitResult(action="accept", content=self.answers.pop(0))


@pytest.fixture(scope="module")
def base(era: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"approval-{era}")


@pytest.fixture(scope="module")
def elicitor() -> Elicitor:
    return Elicitor()


@pytest.fixture(scope="module")
async def client(era: str, base: Path, elicitor: Elicitor) -> AsyncIterator[Client]:
    """A client with an elicitation callback (only a handshake-era connection lets the server use it)."""
    async with stdio_client(base / "store", base, era, elicitation_callback=elicitor) as connected:
        yield connected


@pytest.fixture(scope="module")
async def cannot_elicit(era: str, base: Path, client: Client) -> AsyncIterator[Client]:
    """A client the server cannot ask: the modern-era client (no back channel), or a legacy one without callback."""
    if era == "auto":
        yield client
        return
    async with stdio_client(base / "store", base, era) as connected:
        yield connected


async def cli(base: Path, *args: str) -> tuple[int, str, str]:
    """`loopengt ARGS --store base/store` in a subprocess, as a person types it while the server runs."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [str(LOOPENGT), *args, "--store", str(base / "store")], cwd=base, env=server_env(), check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def start(client: Client) -> dict[str, Any]:
    view = ok(await client.call_tool("start_run", {"spec": APPROVAL_SPEC}))
    assert [t["task_id"] for t in view["tasks"]] == ["implement#1"]
    return view


def assert_waiting(answer: dict[str, Any]) -> None:
    assert answer["accepted"] is True
    assert answer["status"] == "waiting_approval", answer
    assert answer["tasks"] == []
    gates = {g["name"]: g["passed"] for g in answer["gate_results"]}
    assert gates == {"has_summary": True, "sign_off": None}
    assert "loopengt approve" in answer["next_action"]


async def test_elicitation_approves(era: str, client: Client, elicitor: Elicitor) -> None:
    view = await start(client)
    run_id = view["run_id"]
    elicitor.answers = [{"approve": True, "comment": "ok"}]
    answer = ok(await step(client, run_id, "implement#1", {"summary": "the change"}))
    if era == "auto":
        # 2026-07-28 has no server-to-client requests: the server cannot ask, so the run waits durably
        assert elicitor.asked == []
        assert_waiting(answer)
        return
    [asked] = elicitor.asked
    elicitor.asked.clear()
    assert run_id in asked.message
    assert "sign_off" in asked.message
    assert "Ship this change?" in asked.message
    assert isinstance(asked, types.ElicitRequestFormParams)
    assert {"approve", "comment"} <= set(asked.requested_schema["properties"])
    assert answer["accepted"] is True
    assert answer["status"] == "running", answer
    assert [t["task_id"] for t in answer["tasks"]] == ["announce#1"]
    assert {s["name"]: s["status"] for s in answer["steps"]}["implement"] == "completed"
    [given] = [e for e in await trace_events(client, run_id) if e["type"] == "approval_given"]
    assert given["data"]["via"] == "elicitation"
    assert given["data"]["client"] == "mcp 0.1.0"  # the SDK client's default clientInfo
    assert given["data"]["client"] in given["data"]["by"]
    final = await drive(client, answer)
    assert final["status"] == "completed"


async def test_elicitation_rejects_with_a_comment(era: str, client: Client, elicitor: Elicitor) -> None:
    view = await start(client)
    run_id = view["run_id"]
    elicitor.answers = [{"approve": False, "comment": "needs a test for the empty case"}]
    answer = ok(await step(client, run_id, "implement#1", {"summary": "the change"}))
    if era == "auto":
        assert elicitor.asked == []
        assert_waiting(answer)
        return
    assert len(elicitor.asked) == 1
    elicitor.asked.clear()
    assert answer["status"] == "running", answer
    [retry] = answer["tasks"]
    assert retry["task_id"] == "implement#2"
    assert retry["attempt"] == 2
    assert "needs a test for the empty case" in retry["feedback"]
    assert "approval_rejected" in [e["type"] for e in await trace_events(client, run_id)]


@pytest.mark.parametrize("reject", [False, True], ids=["approve", "reject"])
async def test_cli_answers_while_the_server_runs(cannot_elicit: Client, base: Path, reject: bool) -> None:
    view = await start(cannot_elicit)
    run_id = view["run_id"]
    answer = ok(await step(cannot_elicit, run_id, "implement#1", {"summary": "the change"}))
    assert_waiting(answer)
    assert ok(await cannot_elicit.call_tool("get_run", {"run_id": run_id}))["status"] == "waiting_approval"

    args = ["approve", run_id, "--reject", "--comment", "rename the flag"] if reject else ["approve", run_id]
    code, out, err = await cli(base, *args)
    assert code == 0, err
    assert run_id in out
    assert ("rejected" if reject else "approved") in out

    after = ok(await cannot_elicit.call_tool("get_run", {"run_id": run_id}))
    assert after["status"] == "running", after
    if reject:
        [retry] = after["tasks"]
        assert retry["task_id"] == "implement#2"
        assert "rename the flag" in retry["feedback"]
        return
    assert [t["task_id"] for t in after["tasks"]] == ["announce#1"]
    assert (await drive(cannot_elicit, after))["status"] == "completed"


async def test_cli_approve_on_a_run_that_is_not_waiting(client: Client, base: Path) -> None:
    view = await start(client)
    code, out, err = await cli(base, "approve", view["run_id"])
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("loopengt: ")
    assert view["run_id"] in lines[0]
    assert "approval" in lines[0]
    assert "Traceback" not in err + out
    code, _, err = await cli(base, "approve", "no-such-run")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "no-such-run" in err
    # nothing changed: the task is still open
    assert [
        t["task_id"] for t in ok(await client.call_tool("get_run", {"run_id": view["run_id"]}))["tasks"]
    ] == ["implement#1"]


async def test_a_gate_that_wants_a_person_outside_the_agents_client(
    era: str, client: Client, elicitor: Elicitor, base: Path
) -> None:
    """`approval: {via: [cli]}`: a client that would auto-accept is never asked, and the trace says the
    answer came from the CLI."""
    spec = {
        **APPROVAL_SPEC,
        "policy": {
            **APPROVAL_SPEC["policy"],
            "verification_gates": [
                APPROVAL_SPEC["policy"]["verification_gates"][0],
                {"name": "sign_off", "approval": {"via": ["cli"]}, "prompt": "Ship this change?"},
            ],
        },
    }
    view = ok(await client.call_tool("start_run", {"spec": spec}))
    run_id = view["run_id"]
    elicitor.answers = [{"approve": True, "comment": "auto-accepted"}]
    answer = ok(await step(client, run_id, "implement#1", {"summary": "the change"}))
    assert elicitor.asked == []
    elicitor.answers.clear()
    assert_waiting(answer)
    code, _, err = await cli(base, "approve", run_id, "--comment", "looked at it")
    assert code == 0, err
    [given] = [e for e in await trace_events(client, run_id) if e["type"] == "approval_given"]
    assert given["data"]["via"] == "cli"
    assert "client" not in given["data"]
    assert given["data"]["comment"] == "looked at it"
