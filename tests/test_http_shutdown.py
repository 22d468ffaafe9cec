"""SIGTERM ends an HTTP server promptly even while clients hold connections open (a session's notification
stream, an SSE stream): an editor or a service manager stopping it must not need a second signal.
uvicorn waits for open connections to close; the server bounds that wait (`timeout_graceful_shutdown`).

Nothing is lost by the bound: every acknowledged step is durable before its answer, and a client that
retries after the restart gets the same answer (tests/test_mcp_http.py, the kill -9 test).
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp_helpers import HttpServer, ok, with_specs

pytestmark = pytest.mark.anyio

EXIT_WITHIN_SECONDS = 10  # the server's graceful bound (5 s) plus the interpreter's exit


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_sigterm_ends_the_server_while_a_client_is_connected(
    tmp_path: Path, era: str, transport: str
) -> None:
    base = with_specs(tmp_path)
    server = HttpServer(transport, base / "store", base).start()
    try:
        assert server.proc is not None
        with anyio.fail_after(30):
            target = sse_client(server.url) if transport == "sse" else server.url
            async with Client(target, mode=era, read_timeout_seconds=30) as client:
                await client.call_tool("list_runs", {})
                await anyio.sleep(0.5)  # the client's streams are open now
                server.proc.send_signal(signal.SIGTERM)
                began = time.monotonic()
                while server.proc.poll() is None and time.monotonic() - began < EXIT_WITHIN_SECONDS + 5:
                    await anyio.sleep(0.1)
                took = time.monotonic() - began
        assert server.proc.poll() is not None, f"still running {took:.1f} s after SIGTERM:\n{server.log()}"
        assert took < EXIT_WITHIN_SECONDS, f"took {took:.1f} s to exit:\n{server.log()}"
        if transport == "streamable-http":  # the SDK's SSE endpoint logs one when its stream ends (upstream)
            assert "Traceback" not in server.log(), server.log()
    finally:
        server.kill()


async def test_sigterm_does_not_wait_for_a_long_get_run_wait(tmp_path: Path) -> None:
    """A `get_run(wait_seconds=20)` in flight (nothing changes the run) would hold uvicorn's exit 20 s."""
    base = with_specs(tmp_path)
    server = HttpServer("streamable-http", base / "store", base).start()
    try:
        assert server.proc is not None
        proc = server.proc
        with anyio.fail_after(40):
            async with Client(server.url, read_timeout_seconds=30) as client:
                view = ok(await client.call_tool("start_run", {"template": "supervisor_workers"}))

                async def wait_long() -> None:
                    with contextlib.suppress(Exception):
                        await client.call_tool("get_run", {"run_id": view["run_id"], "wait_seconds": 20})

                async with anyio.create_task_group() as group:
                    group.start_soon(wait_long)
                    await anyio.sleep(1.0)  # the wait is in the server now
                    proc.send_signal(signal.SIGTERM)
                    began = time.monotonic()
                    while proc.poll() is None and time.monotonic() - began < 30:
                        await anyio.sleep(0.1)
                    took = time.monotonic() - began
                    group.cancel_scope.cancel()
        assert proc.poll() is not None, server.log()
        assert took < EXIT_WITHIN_SECONDS, f"took {took:.1f} s to exit:\n{server.log()}"
    finally:
        server.kill()
