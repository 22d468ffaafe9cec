"""The MCP Tasks extension (SEP-2663) and progress, through the real `mcp` client over stdio and HTTP.

A Tasks-capable client (tests/tasks_client.py) gets a task handle for step/start_run/resume and the
final answer from tasks/get; tasks/cancel stops a running gate's process group; a client without the
extension gets the plain answer; a call that waits on a gate sends progress when given a token.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import HttpServer, ok, running, stdio_params, trace_events
from tasks_client import TasksClient, cancel_task, create_task, get_task, update_task, wait_task
from test_long_work import gate_spec
from test_mcp_subscriptions import Updates, subscribed

pytestmark = pytest.mark.anyio

TRANSPORTS = ["stdio", "streamable-http"]
# A call waits 1 s for its commands: longer gates answer "checking" first and run on in the server (so a
# task's answer is the one after they settled, and their outcome reaches subscribers on its own).
SHORT_WAIT = {"LOOPENGT_CALL_WAIT": "1"}
GATE = """
import os, sys, time
seconds = float(sys.argv[1])
with open(sys.argv[2], "w") as handle:
    handle.write(str(os.getpid()))
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(min(1.0, max(0.0, end - time.monotonic())))
"""


def spec(name: str, gate_seconds: float) -> dict[str, Any]:
    """One agent step `write` checked by a command gate `tests` that runs `gate_seconds`, printing a line a
    second; its pid goes to `<name>.pid`. A failed (or cancelled) gate is retried once."""
    return gate_spec([sys.executable, "gate.py", str(gate_seconds), f"{name}.pid"], retries=1, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    (root / "gate.py").write_text(GATE)
    for name, seconds in (("quick", 0.5), ("long", 60), ("twelve", 12), ("three", 3)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(spec(name, seconds)))
    return root


@pytest.fixture(scope="module")
def http(project: Path) -> Iterator[HttpServer]:
    server = HttpServer("streamable-http", project / "store-http", project, env=SHORT_WAIT)
    with running(server):
        yield server


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(transport: str, project: Path, request: pytest.FixtureRequest) -> Any:
    """`connect(**client_options)`: a client on this test's transport (stdio: its own server)."""

    def make(**options: Any) -> Client:
        options.setdefault("read_timeout_seconds", 90)
        if transport == "stdio":
            return Client(stdio_params(project / "store-stdio", project, env=SHORT_WAIT), **options)
        server: HttpServer = request.getfixturevalue("http")
        return Client(server.url, **options)

    return make


@contextlib.asynccontextmanager
async def tasks_client(connect: Any) -> AsyncIterator[Client]:
    async with connect(extensions=[TasksClient()]) as client:
        yield client


async def start(client: Client, spec_path: str) -> dict[str, Any]:
    return ok(await client.call_tool("start_run", {"spec_path": spec_path}))


def submission(view: dict[str, Any]) -> dict[str, Any]:
    task = view["tasks"][0]
    return {"run_id": view["run_id"], "task_id": task["task_id"], "output": {"summary": "done"}}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_tasks_client_gets_a_handle_then_the_final_answer(connect: Any) -> None:
    async with tasks_client(connect) as client:
        view = await start(client, "three.yaml")  # start_run as a task, finished by the requester
        created = await create_task(client, "step", submission(view))
        assert created.result_type == "task"
        assert created.status == "working"
        assert len(created.task_id) >= 32  # unguessable: 192 random bits
        assert created.ttl_ms
        assert created.poll_interval_ms
        first = await get_task(client.session, created.task_id)
        assert first.result_type == "complete"
        assert first.status == "working", first
        done = await wait_task(client.session, created.task_id)
        assert done.status == "completed", done
        assert done.result is not None
        answer = done.result["structuredContent"]
        assert answer["accepted"] is True
        assert answer["status"] == "completed", answer
        assert [(g["name"], g["passed"]) for g in answer["gate_results"]] == [("tests", True)]
        assert answer["checking"] == []  # the answer after the gate settled, not the checking one
        ack = await update_task(client.session, created.task_id, {"unknown-key": {"action": "accept"}})
        assert ack.result_type == "complete"
    async with connect() as plain:  # the plain call, again: the same submission, the same answer
        again = ok(await plain.call_tool("step", submission(view)))
        assert again["gate_results"] == answer["gate_results"]
        assert again["status"] == answer["status"]


async def test_the_requester_resolves_tasks_transparently(connect: Any) -> None:
    async with tasks_client(connect) as client:
        view = await start(client, "quick.yaml")
        answer = ok(await client.call_tool("step", submission(view)))  # polled to the end by TasksClient
        assert answer["status"] == "completed"
        assert answer["gate_results"][0]["passed"] is True


async def test_a_client_without_the_extension_gets_the_plain_answer(connect: Any) -> None:
    async with connect() as client:
        view = await start(client, "quick.yaml")
        result = await client.session.call_tool("step", submission(view))  # raises on a task handle
        assert isinstance(result, types.CallToolResult)
        assert ok(result)["status"] == "completed"
        with pytest.raises(MCPError) as missing:
            await get_task(client.session, "x" * 32)
        assert missing.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_a_handshake_era_client_gets_the_plain_answer(project: Path) -> None:
    params = stdio_params(project / "store-legacy", project, env=SHORT_WAIT)
    async with Client(params, mode="legacy", extensions=[TasksClient()], read_timeout_seconds=60) as client:
        view = await start(client, "quick.yaml")
        result = await client.session.call_tool("step", submission(view))
        assert isinstance(result, types.CallToolResult)
        assert ok(result)["status"] == "completed"


async def test_unknown_task_ids_are_invalid_params(connect: Any) -> None:
    async with tasks_client(connect) as client:
        for call in (get_task, cancel_task):
            with pytest.raises(MCPError) as unknown:
                await call(client.session, "no-such-task")
            assert unknown.value.error.code == types.INVALID_PARAMS
            assert "no task" in unknown.value.error.message


async def test_cancel_stops_the_gate_within_two_seconds(connect: Any, project: Path) -> None:
    pid_file = project / "long.pid"
    pid_file.unlink(missing_ok=True)
    async with tasks_client(connect) as client:
        view = await start(client, "long.yaml")
        created = await create_task(client, "step", submission(view))
        with anyio.fail_after(30):
            while not pid_file.exists() or not pid_file.read_text():
                await anyio.sleep(0.05)
        pid = int(pid_file.read_text())
        assert pid_alive(pid)
        with anyio.fail_after(10):  # a working task says what it waits on: the gate and its last line
            while "tick" not in (
                (working := await get_task(client.session, created.task_id)).status_message or ""
            ):
                await anyio.sleep(0.2)
        assert "gate 'tests' of step 'write' running" in (working.status_message or ""), working
        pid_file.unlink()
        asked = time.monotonic()
        ack = await cancel_task(client.session, created.task_id)
        assert ack.result_type == "complete"
        while pid_alive(pid):
            assert time.monotonic() - asked < 2.0, f"gate {pid} still running 2 s after tasks/cancel"
            await anyio.sleep(0.02)
        cancelled = await get_task(client.session, created.task_id)
        assert cancelled.status == "cancelled"
        assert "stopped 1" in (cancelled.status_message or "")
        # the policy retries the step (max_retries 1): the agent gets the task again, with feedback
        with anyio.fail_after(30):
            while True:
                after = ok(await client.call_tool("get_run", {"run_id": view["run_id"]}))
                if after["tasks"] and after["tasks"][0]["task_id"] != view["tasks"][0]["task_id"]:
                    break
                await anyio.sleep(0.1)
        events = await trace_events(client, view["run_id"])
        finished = [e for e in events if e["type"] == "command_finished"]
        assert [e["data"].get("cancelled_by") for e in finished] == ["tasks/cancel"], finished


async def test_progress_during_a_gate_at_most_ten_seconds_apart(project: Path) -> None:
    """A plain call on a 12 s gate, with a progress token: notifications arrive during the gate,
    naming the gate and its last output line."""
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((time.monotonic(), message))

    params = stdio_params(project / "store-progress", project, env={"LOOPENGT_CALL_WAIT": "20"})
    async with Client(params, read_timeout_seconds=90) as client:
        view = await start(client, "twelve.yaml")
        began = time.monotonic()
        result = await client.call_tool("step", submission(view), progress_callback=on_progress)
        ended = time.monotonic()
    assert ok(result)["status"] == "completed"
    assert ended - began >= 11
    times = [began, *(t for t, _ in seen), ended]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(seen) >= 2, seen
    assert max(gaps) <= 10, gaps
    assert any("gate 'tests' of step 'write'" in (m or "") and "tick" in (m or "") for _, m in seen), seen


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_subscribers_hear_when_a_gate_finishes_after_the_call(project: Path, era: str) -> None:
    """The step answers "checking" (its 3 s gate outlives the 1 s bound); the gate's outcome, written by
    the server's command runner after the call, reaches the run's subscribers as resources/updated."""
    updates = Updates()
    params = stdio_params(project / f"store-subscribe-{era}", project, env=SHORT_WAIT)
    async with Client(params, mode=era, message_handler=updates, read_timeout_seconds=60) as client:
        view = await start(client, "three.yaml")
        uri = f"loopengt://runs/{view['run_id']}"
        async with subscribed(client, era, updates, uri) as heard:
            answer = ok(await client.call_tool("step", submission(view)))
            assert [c["name"] for c in answer["checking"]] == ["tests"], answer
            heard.mark()
            with anyio.fail_after(15):
                while True:
                    await heard.wait_for(uri)
                    heard.mark()
                    after = ok(await client.call_tool("get_run", {"run_id": view["run_id"]}))
                    if not after["checking"]:
                        break
        assert after["status"] == "completed", after


async def test_a_task_belongs_to_the_token_that_made_it(project: Path) -> None:
    """Over HTTP with two tokens, a task made with one is not found with the other."""
    server = HttpServer(
        "streamable-http", project / "store-tokens", project, env={**SHORT_WAIT, "LOOPENGT_TOKEN": "one,two"}
    )

    def with_token(token: str) -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        transport = streamable_http_client(server.url, http_client=http)
        return Client(transport, extensions=[TasksClient()], read_timeout_seconds=60)

    with running(server):
        async with with_token("one") as mine, with_token("two") as theirs:
            view = await start(mine, "quick.yaml")
            created = await create_task(mine, "step", submission(view))
            for call in (get_task, cancel_task):
                with pytest.raises(MCPError) as refused:
                    await call(theirs.session, created.task_id)
                assert refused.value.error.code == types.INVALID_PARAMS
            assert (await wait_task(mine.session, created.task_id)).status == "completed"
