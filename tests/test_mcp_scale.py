"""Many runs in one server (issue 22, case 9), through the real client against a server subprocess.

The server runs with a limit of 128 open files (set in the child before it starts Python's server),
so a store of 1,000 runs works only if open files are bounded, not one per run ever stepped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_helpers import ok, serve_args, server_env, step, text_of

from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

pytestmark = pytest.mark.anyio

RUNS = 1000
FILE_LIMIT = 128
TWO_STEPS = {
    "name": "tiny",
    "pattern": "sequential",
    "workspace": "none",
    "agents": [{"name": "w"}],
    "steps": [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}],
}
# The child lowers its own file limit and then becomes the server (what preexec_fn would do for Popen).
LIMITED = (
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({n}, {n})); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def limited_server(store: Path, cwd: Path, **env: str) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", LIMITED.format(n=FILE_LIMIT), *serve_args(store)],
        cwd=str(cwd),
        env=server_env(**env),
    )
    return Client(params, mode="auto", read_timeout_seconds=120)


def make_runs(store: Path, cwd: Path, count: int) -> list[str]:
    runs = Runs(FileStore(store), cwd=cwd)
    return [runs.start_run(spec=TWO_STEPS, run_id=f"run-{i:04d}").run_id for i in range(count)]


@pytest.mark.timeout(600)  # 1,000 runs created and 1,000 steps over MCP: about a minute on a 2-CPU VM
async def test_a_thousand_runs_stay_listed_and_steppable_under_a_128_file_limit(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ids = make_runs(store, tmp_path, RUNS)
    async with limited_server(store, tmp_path) as client:
        for run_id in ids:
            view = ok(await step(client, run_id, "a#1", {"done": run_id}))
            assert [t["task_id"] for t in view["tasks"]] == ["b#1"], view
        listed = ok(await client.call_tool("list_runs", {"limit": 5000}))["runs"]
        assert sorted(r["run_id"] for r in listed) == ids
        assert {r["status"] for r in listed} == {"running"}
        assert {r["turn"] for r in listed} == {1}
        for run_id in ids[:20]:  # the first runs, long since dropped from every cache, step on
            view = ok(await step(client, run_id, "b#1", {"done": True}))
            assert view["status"] == "completed", view
        again = ok(await step(client, ids[0], "a#1", {"done": ids[0]}))  # an old answer, replayed
        assert again["accepted"] is True


async def test_a_run_that_cannot_be_read_is_listed_as_such(tmp_path: Path) -> None:
    """A corrupt run is listed as corrupt with the reason; the others are listed as usual, never 'No runs.'."""
    store = tmp_path / "store"
    ids = make_runs(store, tmp_path, 3)
    log = store / "runs" / ids[1] / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0][:20] + b"garbage\n" + b"".join(lines[1:]))
    async with limited_server(store, tmp_path) as client:
        result = await client.call_tool("list_runs", {})
        listed: list[dict[str, Any]] = ok(result)["runs"]
        by_id = {r["run_id"]: r for r in listed}
        assert set(by_id) == set(ids)
        assert by_id[ids[1]]["status"] == "corrupt"
        assert "line 1" in by_id[ids[1]]["error"]
        assert f"{ids[1]} corrupt" in text_of(result)
        assert by_id[ids[0]]["status"] == "running"
        assert by_id[ids[0]]["error"] is None
        only = ok(await client.call_tool("list_runs", {"status": "corrupt"}))["runs"]
        assert [r["run_id"] for r in only] == [ids[1]]


async def test_the_trace_is_read_a_page_at_a_time_with_a_cursor(tmp_path: Path) -> None:
    """The first page of a long trace is a page, not the log; following next_cursor yields every event once."""
    from mcp_helpers import resource_json, trace_events

    from loopengt_server.mcp.resources import TRACE_PAGE_EVENTS

    store = tmp_path / "store"
    runs = Runs(FileStore(store), cwd=tmp_path)
    view = runs.start_run(
        spec={
            **TWO_STEPS,
            "steps": [{"name": "a", "agent": "w", "next": "a"}],
            "pattern": "custom",
            "policy": {"max_turns": 1000},
        }
    )
    for _ in range(300):
        view = runs.step(view.run_id, view.tasks[0].task_id, {"n": view.turn})
    total = FileStore(store).last_seq(view.run_id)
    assert total > 2 * TRACE_PAGE_EVENTS
    async with limited_server(store, tmp_path) as client:
        first = resource_json(await client.read_resource(f"loopengt://runs/{view.run_id}/trace"))
        assert [e["seq"] for e in first["events"]] == list(range(1, TRACE_PAGE_EVENTS + 1))
        assert first["next_cursor"] == str(TRACE_PAGE_EVENTS)
        events = await trace_events(client, view.run_id)
        assert [e["seq"] for e in events] == list(range(1, total + 1))
        last = resource_json(
            await client.read_resource(f"loopengt://runs/{view.run_id}/trace?cursor={total}")
        )
        assert last == {"run_id": view.run_id, "events": [], "next_cursor": None}
        with pytest.raises(Exception, match="not a trace cursor"):
            await client.read_resource(f"loopengt://runs/{view.run_id}/trace?cursor=abc")
