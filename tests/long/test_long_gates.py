"""Issue 14's acceptance runs (minutes): real clients' limits against real long gates.

- A scripted client whose every call is cancelled after 60 s (Codex's old default) drives a spec whose
  test gate takes 150 s and fails once, then passes, over stdio and streamable HTTP at once: the run
  completes, the gate ran exactly once per submission, and no call took more than the bound + 2 s.
- A stdio server killed in the middle of a 60 s gate: the next server runs it again, the run completes,
  and the trace shows the abandoned attempt.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client
from mcp_helpers import HttpServer, ok, running, stdio_params, trace_events
from test_long_work import gate_spec

CUT_SECONDS = 60.0  # the client gives up on any call after this long
BOUND = 20.0  # LOOPENGT_CALL_WAIT's default, which the servers here use


def gate(seconds: float, marker: Path, *, fail_first: bool) -> list[str]:
    """A test gate that prints a line every 10 s, counts its runs in `marker`, and (fail_first) fails its
    first run."""
    script = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "n = len(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text('x' * n)\n"
        f"end = time.monotonic() + {seconds}\n"
        "while time.monotonic() < end:\n"
        "    print(f'run {n}: {int(end - time.monotonic())} s to go', flush=True)\n"
        "    time.sleep(min(10, max(0, end - time.monotonic())))\n"
        f"sys.exit(1 if {fail_first} and n == 1 else 0)\n"
    )
    return [sys.executable, "-c", script]


def write_spec(root: Path, command: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    spec = gate_spec(command, retries=2, timeout=400)
    (root / "loop.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")


class CutClient:
    """Every call is cancelled after CUT_SECONDS, as Codex does; records how long each call took."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.took: list[tuple[str, float]] = []

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any] | None:
        began = time.monotonic()
        with anyio.move_on_after(CUT_SECONDS):
            result = ok(await self.client.call_tool(name, args))
            self.took.append((name, time.monotonic() - began))
            return result
        self.took.append((name, time.monotonic() - began))
        return None  # cut: the agent tries again


async def drive(agent: CutClient) -> tuple[str, dict[str, Any]]:
    """The agent: start, submit, wait while checking (get_run wait_seconds), submit the retry, to the end."""
    view = await agent.call("start_run", {"spec_path": "loop.yaml"})
    assert view is not None
    run_id = view["run_id"]
    submitted: set[str] = set()
    for _ in range(200):
        if view is not None and view["status"] in ("completed", "failed", "cancelled"):
            return run_id, view
        if view is not None and view["tasks"]:
            task = view["tasks"][0]["task_id"]
            answer = await agent.call("step", {"run_id": run_id, "task_id": task, "output": {"fixed": task}})
            if task not in submitted and answer is not None and answer["checking"]:
                # a client that lost the answer sends the same submission again: no second gate run
                again = await agent.call(
                    "step", {"run_id": run_id, "task_id": task, "output": {"fixed": task}}
                )
                assert again is not None
                assert again["checking"]
            submitted.add(task)
            view = answer
            continue
        view = await agent.call("get_run", {"run_id": run_id, "wait_seconds": BOUND})
    raise AssertionError("the run did not end")


def check_run(events: list[dict[str, Any]], marker: Path, took: list[tuple[str, float]]) -> None:
    kinds = [e["type"] for e in events]
    assert kinds.count("output_submitted") == 2  # write#1 (its gate fails), write#2 (passes)
    assert kinds.count("command_started") == 2  # once per submission
    assert kinds.count("gate_failed") == 1
    assert kinds.count("gate_passed") == 1
    assert marker.read_text() == "xx"
    slowest = max(seconds for _, seconds in took)
    assert slowest <= BOUND + 2, took


@pytest.mark.timeout(1200)
@pytest.mark.anyio
async def test_a_150_s_gate_that_fails_once_under_60_s_call_cuts_stdio_and_http(tmp_path: Path) -> None:
    stdio_root, http_root = tmp_path / "stdio", tmp_path / "http"
    write_spec(stdio_root, gate(150, stdio_root / "runs.txt", fail_first=True))
    write_spec(http_root, gate(150, http_root / "runs.txt", fail_first=True))
    results: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]], CutClient]] = {}
    began = time.monotonic()

    async def over_stdio() -> None:
        params = stdio_params(stdio_root / "store", stdio_root)
        async with Client(params, mode="auto", read_timeout_seconds=CUT_SECONDS + 5) as client:
            agent = CutClient(client)
            run_id, view = await drive(agent)
            results["stdio"] = (run_id, view, await trace_events(client, run_id), agent)

    async def over_http() -> None:
        server = HttpServer("streamable-http", http_root / "store", http_root)
        with running(server):
            async with Client(server.url, read_timeout_seconds=CUT_SECONDS + 5) as client:
                agent = CutClient(client)
                run_id, view = await drive(agent)
                results["http"] = (run_id, view, await trace_events(client, run_id), agent)

    async with anyio.create_task_group() as group:
        group.start_soon(over_stdio)
        group.start_soon(over_http)
    for name, root in (("stdio", stdio_root), ("http", http_root)):
        _, view, events, agent = results[name]
        assert view["status"] == "completed", view["next_action"]
        check_run(events, root / "runs.txt", agent.took)
        slowest = max(s for _, s in agent.took)
        print(f"[long] {name}: {len(agent.took)} calls, slowest {slowest:.1f} s")
    print(f"[long] 150 s gate failing once, stdio and HTTP together: {time.monotonic() - began:.0f} s")


@pytest.mark.timeout(600)
@pytest.mark.anyio
async def test_a_stdio_server_killed_mid_60_s_gate_the_next_server_runs_it_again(tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    write_spec(tmp_path, gate(60, marker, fail_first=False))
    params = stdio_params(tmp_path / "store", tmp_path)
    began = time.monotonic()
    async with Client(params, mode="auto", read_timeout_seconds=CUT_SECONDS + 5) as client:
        run_id = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))["run_id"]
        answer = ok(
            await client.call_tool("step", {"run_id": run_id, "task_id": "write#1", "output": {"fixed": 1}})
        )
        assert answer["checking"][0]["last_output"].startswith("run 1:")
        await anyio.sleep(10)  # well inside the gate
        started = [e for e in await trace_events(client, run_id) if e["type"] == "command_started"]
        pid = int(started[0]["data"]["runner"].rpartition(":")[2])
        os.kill(pid, signal.SIGKILL)
    async with Client(params, mode="auto", read_timeout_seconds=CUT_SECONDS + 5) as client:
        agent = CutClient(client)
        view: dict[str, Any] | None = None
        for _ in range(20):
            view = await agent.call("get_run", {"run_id": run_id, "wait_seconds": BOUND})
            if view is not None and not view["checking"]:
                break
        assert view is not None
        assert view["status"] == "completed", view["next_action"]
        events = await trace_events(client, run_id)
    kinds = [e["type"] for e in events]
    assert kinds.count("command_started") == 2
    [abandoned] = [e for e in events if e["type"] == "command_abandoned"]
    assert abandoned["data"]["runner"].endswith(f":{pid}")
    assert abandoned["data"]["reason"] == "runner_died"
    assert kinds.count("gate_passed") == 1
    assert marker.read_text() == "xx"
    assert max(s for _, s in agent.took) <= BOUND + 2
    print(f"[long] stdio server killed mid 60 s gate, run completed in {time.monotonic() - began:.0f} s")
