"""The MCP server over streamable HTTP (/mcp) and SSE (/sse), both protocol eras: the happy path, Origin checks,
the bearer token, and a kill -9 right after an acknowledged step.

The module's servers start together (their imports overlap) and are stopped at teardown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import (
    INITIALIZE,
    HttpServer,
    Scripted,
    drive,
    ok,
    project_spec,
    resource_json,
    running,
    step,
    trace_events,
    with_specs,
)

pytestmark = pytest.mark.anyio

TOKEN = "secret"
EVIL = "http://evil.example"
RAW_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
SUPERVISOR = Scripted(supervise=[{"next_step": "fix_bug"}, {"done": True}])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_specs(tmp_path_factory.mktemp("http"))


@pytest.fixture(scope="module")
def servers(base: Path) -> Iterator[dict[str, HttpServer]]:
    """The module's servers by name. The kill -9 test replaces "streamable-http" with its restarted server."""
    shared = base / "store"
    made = {
        "streamable-http": HttpServer("streamable-http", shared, base),
        "sse": HttpServer("sse", shared, base),
        "token": HttpServer("streamable-http", base / "token-store", base, env={"LOOPENGT_TOKEN": TOKEN}),
    }
    with running(*made.values()):
        try:
            yield made
        finally:
            for server in made.values():
                server.stop()


def target(server: HttpServer, headers: dict[str, str] | None = None) -> Any:
    """What Client() connects to: a URL, or a transport carrying extra headers."""
    if server.transport == "sse":
        return sse_client(server.url, headers=headers)
    if headers:
        return streamable_http_client(server.url, http_client=httpx2.AsyncClient(headers=headers))
    return server.url


@contextlib.asynccontextmanager
async def connect(
    server: HttpServer, era: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    with anyio.fail_after(30):
        async with Client(target(server, headers), mode=era, read_timeout_seconds=30) as client:
            assert client.protocol_version == ("2026-07-28" if era == "auto" else "2025-11-25")
            yield client


def flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in flatten(inner)]
    return [exc]


async def assert_refused(server: HttpServer, era: str, headers: dict[str, str] | None = None) -> None:
    """The client cannot connect: the server answered the first request with an HTTP error."""
    with anyio.fail_after(20), pytest.raises(BaseException) as caught:  # noqa: PT011 - checked below
        async with Client(target(server, headers), mode=era, read_timeout_seconds=10) as client:
            await client.call_tool("list_runs", {})
    leaves = flatten(caught.value)
    assert any(isinstance(e, MCPError | httpx2.HTTPStatusError) for e in leaves), leaves


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_happy_path(servers: dict[str, HttpServer], era: str, transport: str) -> None:
    async with connect(servers[transport], era) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert len(tools) == 9
        assert {"start_run", "step"} <= tools
        view = ok(await client.call_tool("start_run", {"spec_path": project_spec("supervisor_triage.yaml")}))
        final = await drive(client, view, Scripted(supervise=[{"next_step": "fix_bug"}, {"done": True}]))
        assert final["status"] == "completed", final
        assert final["turn"] == 3
        events = await trace_events(client, view["run_id"])
        assert events[-1]["type"] == "run_completed"
        run = resource_json(
            await client.read_resource(f"loopengt://runs/{view['run_id']}", cache_mode="bypass")
        )
        assert run["status"] == "completed"
        started = ok(await client.call_tool("start_run", {"template": "supervisor_workers"}))
        assert started["status"] == "running"
        assert started["tasks"]


async def test_foreign_origin_is_refused(servers: dict[str, HttpServer], era: str) -> None:
    http = servers["streamable-http"]
    async with httpx2.AsyncClient(timeout=10) as raw:
        refused = await raw.post(http.url, json=INITIALIZE, headers={**RAW_HEADERS, "Origin": EVIL})
        assert 400 <= refused.status_code < 500, refused.status_code
        assert refused.status_code == 403
        forged_host = await raw.post(
            http.url, json=INITIALIZE, headers={**RAW_HEADERS, "Host": "evil.example"}
        )
        assert 400 <= forged_host.status_code < 500
        same_origin = f"http://127.0.0.1:{http.port}"
        allowed = await raw.post(http.url, json=INITIALIZE, headers={**RAW_HEADERS, "Origin": same_origin})
        assert allowed.status_code == 200, allowed.text
        async with raw.stream("GET", servers["sse"].url, headers={"Origin": EVIL}) as sse:
            assert sse.status_code == 403
    await assert_refused(http, era, {"Origin": EVIL})
    await assert_refused(servers["sse"], era, {"Origin": EVIL})
    async with connect(http, era) as client:  # the server still serves well-behaved clients
        ok(await client.call_tool("list_runs", {}))


async def test_bearer_token(servers: dict[str, HttpServer], era: str) -> None:
    server = servers["token"]
    async with httpx2.AsyncClient(timeout=10) as raw:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = await raw.post(server.url, json=INITIALIZE, headers={**RAW_HEADERS, **headers})
            assert answer.status_code == 401, (headers, answer.status_code)
            assert answer.headers["www-authenticate"].startswith("Bearer")
        good = await raw.post(
            server.url, json=INITIALIZE, headers={**RAW_HEADERS, "Authorization": f"Bearer {TOKEN}"}
        )
        assert good.status_code == 200
    await assert_refused(server, era)
    await assert_refused(server, era, {"Authorization": "Bearer wrong"})
    async with connect(server, era, {"Authorization": f"Bearer {TOKEN}"}) as client:
        view = ok(await client.call_tool("start_run", {"spec_path": project_spec("handoff_pipeline.yaml")}))
        assert (await drive(client, view))["status"] == "completed"


async def test_kill_9_right_after_an_acknowledged_step(servers: dict[str, HttpServer], era: str) -> None:
    server = servers["streamable-http"]
    output = {"summary": "analysed before the crash", "era": era}
    async with connect(server, era) as client:
        view = ok(await client.call_tool("start_run", {"spec_path": project_spec("handoff_pipeline.yaml")}))
        run_id = view["run_id"]
        answer = ok(await step(client, run_id, "analyse#1", output))
        assert answer["accepted"] is True
        assert answer["turn"] == 1
        server.kill()  # SIGKILL right after the acknowledgement: no shutdown code runs
        assert server.proc is not None
        assert server.proc.returncode == -9
    # restart on the same store (a new port); it replaces the killed server for the rest of the module
    restarted = servers["streamable-http"] = HttpServer("streamable-http", server.store, server.cwd).start()
    async with connect(restarted, era) as client:
        view = ok(await client.call_tool("get_run", {"run_id": run_id}))
        assert view["status"] == "running"
        assert view["turn"] == 1
        assert [t["task_id"] for t in view["tasks"]] == ["implement#1"]
        events = await trace_events(client, run_id)
        submitted = [e for e in events if e["type"] == "output_submitted"]
        assert [(e["data"]["task_id"], e["data"]["output"]) for e in submitted] == [("analyse#1", output)]
        again = ok(await step(client, run_id, "analyse#1", output))  # still idempotent after the crash
        assert again["accepted"] is True
        assert again["turn"] == 1
        final = await drive(client, view)
        assert final["status"] == "completed"
        assert final["turn"] == 3
