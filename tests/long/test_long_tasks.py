"""Issue 14's acceptance runs for MCP Tasks and progress (minutes; not part of `python -m pytest`).

- Through the Tasks extension, a 150 s test gate that fails once, then passes: every call answers at
  once (a task handle, tasks/get), the run completes, each submission's answer arrives through tasks/get
  and the gate ran exactly once per submission.
- Progress: during a 60 s gate, a client that gives a progress token gets notifications at least every
  10 s in each call it waits in (step, then get_run with wait_seconds), at the default 20 s bound.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import ok, stdio_params, trace_events
from tasks_client import TasksClient, create_task, wait_task
from test_long_gates import gate, write_spec

pytestmark = pytest.mark.anyio
CALL_SECONDS = 2.0  # a Tasks call answers at once: a handle, or the task's state


async def timed(calls: list[float], coro: Any) -> Any:
    began = time.monotonic()
    try:
        return await coro
    finally:
        calls.append(time.monotonic() - began)


@pytest.mark.timeout(600)
async def test_a_150_s_gate_through_tasks(tmp_path: Path) -> None:
    write_spec(tmp_path, gate(150, tmp_path / "runs.txt", fail_first=True))
    calls: list[float] = []
    async with Client(
        stdio_params(tmp_path / "store", tmp_path), extensions=[TasksClient()], read_timeout_seconds=60
    ) as client:
        view = ok(await timed(calls, client.call_tool("start_run", {"spec_path": "loop.yaml"})))
        for attempt in (1, 2):
            task = view["tasks"][0]
            created = await timed(
                calls,
                create_task(
                    client,
                    "step",
                    {"run_id": view["run_id"], "task_id": task["task_id"], "output": {"summary": "fixed"}},
                ),
            )
            done = await wait_task(client.session, created.task_id, deadline_seconds=240)
            assert done.status == "completed", done
            assert done.result is not None
            view = done.result["structuredContent"]
            assert [g["passed"] for g in view["gate_results"]] == [attempt == 2], view
        assert view["status"] == "completed", view
        events = await trace_events(client, view["run_id"])
    assert max(calls) <= CALL_SECONDS, calls
    assert (tmp_path / "runs.txt").read_text() == "xx"  # once per submission
    assert len([e for e in events if e["type"] == "command_finished"]) == 2


@pytest.mark.timeout(300)
async def test_progress_at_least_every_10_s_during_a_60_s_gate(tmp_path: Path) -> None:
    write_spec(tmp_path, gate(60, tmp_path / "runs.txt", fail_first=True))
    waits: list[list[float]] = []  # per call: its start, each notification, its end

    async def call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        times = [time.monotonic()]

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            assert message is not None
            assert "gate 'tests' of step 'write'" in message, message
            times.append(time.monotonic())

        result = ok(await client.call_tool(name, arguments, progress_callback=on_progress))
        waits.append([*times, time.monotonic()])
        return result

    async with Client(stdio_params(tmp_path / "store", tmp_path), read_timeout_seconds=60) as client:
        view = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))
        run_id = view["run_id"]
        task = view["tasks"][0]
        began = time.monotonic()
        view = await call(client, "step", {"run_id": run_id, "task_id": task["task_id"], "output": {}})
        while view["checking"]:
            view = await call(client, "get_run", {"run_id": run_id, "wait_seconds": 20})
        assert time.monotonic() - began >= 59
    gaps = [b - a for times in waits for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 10, waits
    assert sum(len(times) - 2 for times in waits) >= 6, waits  # about one every 4 s over 60 s
