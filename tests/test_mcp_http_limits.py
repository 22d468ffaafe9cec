"""HTTP limits of `loopengt serve` (streamable HTTP and SSE): requests that arrive too slowly are cut off,
open sessions are capped, and a session answers only to the token that opened it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import INITIALIZE, HttpServer, running

pytestmark = pytest.mark.anyio

HEADER_SECONDS = 2.0
LIMITS = {
    "LOOPENGT_HTTP_HEADER_TIMEOUT": str(HEADER_SECONDS),
    "LOOPENGT_HTTP_BODY_TIMEOUT": "2",
    "LOOPENGT_MAX_SESSIONS": "3",
}
TOKENS = {"LOOPENGT_TOKEN": "alpha,beta"}
ACCEPT = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def without_speedups(folder: Path) -> str:
    """A PYTHONPATH under which `import httptools` and `import uvloop` fail, as where their wheels are
    missing (Windows has no uvloop): the server must fall back to h11 and asyncio's loop."""
    folder.mkdir()
    for name in ("httptools", "uvloop"):
        (folder / f"{name}.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    return str(folder)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, HttpServer]]:
    base = tmp_path_factory.mktemp("http-limits")
    plain = {**LIMITS, "PYTHONPATH": without_speedups(base / "hidden")}
    made = {
        "streamable-http": HttpServer("streamable-http", base / "s1", base, env=LIMITS),
        "h11": HttpServer("streamable-http", base / "s5", base, env=plain),
        "sse": HttpServer("sse", base / "s2", base, env=LIMITS),
        "tokens": HttpServer("streamable-http", base / "s3", base, env=TOKENS),
        "tokens-sse": HttpServer("sse", base / "s4", base, env=TOKENS),
    }
    with running(*made.values()):
        yield made


async def slow_client(port: int, path: str, closed_after: list[float]) -> None:
    """Send a request's headers one byte every 0.2 s, for ever; note when the server hangs up."""
    request = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "X-Slow: " + "a" * 200
    started = time.monotonic()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        for byte in request.encode():
            try:
                await stream.send(bytes([byte]))
                answered = False
                with anyio.move_on_after(0.2):
                    await stream.receive()  # the 408, before the close
                    answered = True
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                break
            if answered:
                break
    closed_after.append(time.monotonic() - started)


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "h11"])
async def test_slow_header_connections_are_closed_and_others_still_served(
    servers: dict[str, HttpServer], transport: str
) -> None:
    server = servers[transport]
    path = "/messages/" if transport == "sse" else "/mcp"
    closed_after: list[float] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(slow_client, server.port, path, closed_after)
            await anyio.sleep(0.5)  # all 50 are dribbling their headers now
            target = sse_client(server.url) if transport == "sse" else server.url
            async with Client(target, read_timeout_seconds=10) as client:
                started = time.monotonic()
                tools = await client.list_tools()
                assert len(tools.tools) == 9
                assert time.monotonic() - started < HEADER_SECONDS
    assert len(closed_after) == 50
    assert max(closed_after) < HEADER_SECONDS + 2.0, sorted(closed_after)
    assert min(closed_after) >= HEADER_SECONDS - 0.2


@pytest.mark.parametrize("parser", ["streamable-http", "h11"])
async def test_a_body_that_never_ends_is_cut_off_with_408(
    servers: dict[str, HttpServer], parser: str
) -> None:
    server = servers[parser]
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        'Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{"jsonrpc":'
    )
    started = time.monotonic()
    answer = b""
    with anyio.fail_after(15):
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(head.encode())
            try:
                while chunk := await stream.receive():
                    answer += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                pass
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"LOOPENGT_HTTP_BODY_TIMEOUT" in answer
    assert time.monotonic() - started < 2 + 2


async def raw_answer(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection; everything the server sends back until it closes."""
    answer = b""
    with anyio.fail_after(15):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request)
            try:
                while chunk := await stream.receive():
                    answer += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                pass
    return answer


@pytest.mark.parametrize(("parser", "status"), [("streamable-http", b"431"), ("h11", b"400")])
async def test_headers_over_16_kib_are_refused_by_either_parser(
    servers: dict[str, HttpServer], parser: str, status: bytes
) -> None:
    """httptools (the default) buffers a header line of any length: the server holds it to h11's bound."""
    server = servers[parser]
    head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Big: ".encode()
    answer = await raw_answer(server.port, head + b"a" * 20_000)  # never ends the line
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    if parser != "h11":
        assert b"larger than 16384 bytes" in answer
    # headers within the bound, arriving in pieces, are read as usual
    async with httpx2.AsyncClient(timeout=10) as http:
        fine = await http.post(server.url, json=INITIALIZE, headers={**ACCEPT, "X-Pad": "b" * 12_000})
        assert fine.status_code == 200, fine.text
        await http.delete(server.url, headers={**ACCEPT, "mcp-session-id": fine.headers["mcp-session-id"]})


def test_the_server_runs_on_uvloop_and_httptools_where_installed(servers: dict[str, HttpServer]) -> None:
    """uvicorn's own speedups are used when their wheels are there, and not needed when they are not."""

    def loaded(server: HttpServer) -> str:
        assert server.proc is not None
        return Path(f"/proc/{server.proc.pid}/maps").read_text()

    if not Path("/proc/self/maps").exists():
        pytest.skip("reads /proc (Linux)")
    fast, plain = loaded(servers["streamable-http"]), loaded(servers["h11"])
    assert "uvloop/loop" in fast
    assert "httptools/parser" in fast
    assert "uvloop" not in plain
    assert "httptools" not in plain


async def test_sessions_beyond_the_cap_get_503_naming_the_variable(servers: dict[str, HttpServer]) -> None:
    server = servers["streamable-http"]
    async with httpx2.AsyncClient(timeout=10) as http:
        opened = []
        for _ in range(3):
            answer = await http.post(server.url, json=INITIALIZE, headers=ACCEPT)
            assert answer.status_code == 200, answer.text
            opened.append(answer.headers["mcp-session-id"])
        refused = await http.post(server.url, json=INITIALIZE, headers=ACCEPT)
        assert refused.status_code == 503
        assert "LOOPENGT_MAX_SESSIONS" in refused.json()["error"]["message"]
        # An open session still works; closing one makes room.
        for session in opened:
            closed = await http.delete(server.url, headers={**ACCEPT, "mcp-session-id": session})
            assert closed.status_code == 200
        again = await http.post(server.url, json=INITIALIZE, headers=ACCEPT)
        assert again.status_code == 200
        await http.delete(server.url, headers={**ACCEPT, "mcp-session-id": again.headers["mcp-session-id"]})


async def test_sse_streams_beyond_the_cap_get_503_naming_the_variable(servers: dict[str, HttpServer]) -> None:
    server = servers["sse"]
    with anyio.fail_after(20):
        async with httpx2.AsyncClient(timeout=10) as http:
            async with (
                http.stream("GET", server.url) as one,
                http.stream("GET", server.url) as two,
                http.stream("GET", server.url) as three,
            ):
                assert [one.status_code, two.status_code, three.status_code] == [200, 200, 200]
                refused = await http.get(server.url)
                assert refused.status_code == 503
                assert "LOOPENGT_MAX_SESSIONS" in refused.json()["error"]["message"]
            for _ in range(50):  # the streams are closed: room again (the server notices within moments)
                async with http.stream("GET", server.url) as four:
                    if four.status_code == 200:
                        break
                await anyio.sleep(0.1)
            assert four.status_code == 200


async def test_a_session_answers_only_to_the_token_that_opened_it(servers: dict[str, HttpServer]) -> None:
    server = servers["tokens"]
    alpha, beta = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
    async with httpx2.AsyncClient(timeout=10) as http:
        opened = await http.post(server.url, json=INITIALIZE, headers={**ACCEPT, **alpha})
        assert opened.status_code == 200, opened.text
        session = {"mcp-session-id": opened.headers["mcp-session-id"]}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        stolen = await http.post(server.url, json=listing, headers={**ACCEPT, **beta, **session})
        assert stolen.status_code == 404
        assert (
            await http.post(server.url, json=listing, headers={**ACCEPT, **alpha, **session})
        ).status_code == 200
        assert (await http.post(server.url, json=INITIALIZE, headers=ACCEPT)).status_code == 401
    # Both tokens work, each with its own sessions.
    for token in ("alpha", "beta"):
        transport = streamable_http_client(
            server.url, http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        )
        async with Client(transport, read_timeout_seconds=10) as client:
            assert len((await client.list_tools()).tools) == 9


async def test_an_sse_session_answers_only_to_the_token_that_opened_it(
    servers: dict[str, HttpServer],
) -> None:
    server = servers["tokens-sse"]
    alpha, beta = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
    found: list[str] = []
    have_endpoint = anyio.Event()

    async def listen(http: httpx2.AsyncClient) -> None:
        """Keep the session's stream open (leaving it would end the session), noting its endpoint."""
        async with http.stream("GET", server.url, headers=alpha) as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                if line.startswith("data:") and not found:
                    found.append(line.removeprefix("data:").strip())
                    have_endpoint.set()

    with anyio.fail_after(20):
        async with httpx2.AsyncClient(timeout=10) as http, anyio.create_task_group() as group:
            group.start_soon(listen, http)
            await have_endpoint.wait()
            assert "session_id=" in found[0]
            url = f"http://127.0.0.1:{server.port}{found[0]}"
            body = json.dumps(INITIALIZE)
            stolen = await http.post(url, content=body, headers={**beta, "Content-Type": "application/json"})
            assert stolen.status_code == 404
            own = await http.post(url, content=body, headers={**alpha, "Content-Type": "application/json"})
            assert own.status_code == 202
            group.cancel_scope.cancel()


def test_bad_limit_settings_are_refused_naming_the_variable(tmp_path: Path) -> None:
    from loopengt_core.model.errors import InvalidArgument
    from loopengt_server.mcp.http_limits import HttpLimits

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOOPENGT_MAX_SESSIONS", "lots")
        with pytest.raises(
            InvalidArgument, match=r"LOOPENGT_MAX_SESSIONS='lots': use a whole number greater than 0"
        ):
            HttpLimits.from_env()
        patch.setenv("LOOPENGT_MAX_SESSIONS", "5")
        patch.setenv("LOOPENGT_HTTP_HEADER_TIMEOUT", "-1")
        with pytest.raises(InvalidArgument, match="LOOPENGT_HTTP_HEADER_TIMEOUT"):
            HttpLimits.from_env()
