"""stdio with an answer for every line the client sends.

The SDK's stdio transport hands a line its JSON-RPC parser refuses to the server as an exception, and
the server drops it: the client waits forever. Its parser refuses values nested about 200 levels
deep, so a `step` with a deeply nested output would hang its caller instead of hearing of the limit.
Here such a line is answered: a `tools/call` nested too deep gets a tool error naming the limit and
its variable; any other request gets a JSON-RPC error (-32700 parse error, -32600 invalid request)
(with the request's id when it is JSON), as the JSON-RPC specification asks.

It relies on the SDK's claim of fds 0 and 1 (which keeps stray output off the wire) and on reading the
refused line back from the parser's ValidationError; it runs the low-level server itself, through
loopengt_server.mcp.sdk (the SDK offers no public way to put a stream in between).

The lines themselves are read and written on the event loop when the wire is a pipe or a socket (as a
client that spawns the server makes it): the SDK's `stdio_server()` reads each line in a worker thread
and writes each message with two more (write, flush), each a hop to a thread and back plus a wake-up of
the event loop; here a line costs a non-blocking `os.read`/`os.write` and, only when the pipe is empty or
full, a wait on the descriptor. Anything else (a regular file, a terminal, no descriptor) is served by
the SDK's own `stdio_server()`. The parsing, the context-carrying streams and the session are the SDK's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import sys
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from loopengt_core.model.limits import MAX_JSON_DEPTH
from loopengt_server.mcp.sdk import claim_stdio, context_streams, run_lowlevel

log = logging.getLogger("loopengt.stdio")

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')
_ENVELOPE_LEVELS = 3  # {"params": {"arguments": {<a tool argument>: ...}}}


def envelope(line: str) -> tuple[Any, str | None, int]:
    """The top-level `id` and `method` of a JSON-RPC line and its nesting depth, without recursion
    (the line may be nested far beyond what a recursive parser takes)."""
    depth = deepest = 0
    found: dict[str, Any] = {}
    key: str | None = None
    expect_key = False
    decoder = json.JSONDecoder()
    for match in _TOKEN.finditer(line):
        token = match.group()
        if token in "{[":
            depth += 1
            deepest = max(deepest, depth)
            expect_key = token == "{" and depth == 1
        elif token in "}]":
            depth -= 1
        elif token == ",":
            expect_key = depth == 1
        elif token == ":":
            if key in ("id", "method") and depth == 1:
                with contextlib.suppress(ValueError):
                    found[key] = decoder.raw_decode(line, _skip_space(line, match.end()))[0]
            key = None
        elif expect_key:
            key = token[1:-1]
            expect_key = False
    return found.get("id"), found.get("method") if isinstance(found.get("method"), str) else None, deepest


def _skip_space(line: str, at: int) -> int:
    while at < len(line) and line[at] in " \t\r\n":
        at += 1
    return at


def answer_to(line: str) -> types.JSONRPCMessage | None:
    """What to send back for a line the SDK's parser refused (None: a notification, answer nothing).

    JSON-RPC 2.0: text that is not JSON is a parse error (-32700, id null); JSON that is not a valid
    request is an invalid request (-32600, with its id when one can be read); a notification is never
    answered. A request nested deeper than we read gets an answer naming the limit.
    """
    request_id, method, depth = envelope(line)
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    limit = MAX_JSON_DEPTH.get()
    if depth > limit:
        text = (
            f"the request is nested {depth} levels deep, more than this server reads; a value may be nested "
            f"at most {limit} levels ({MAX_JSON_DEPTH.variable}). Flatten it"
        )
        if request_id is not None and method == "tools/call":
            result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
            return types.JSONRPCResponse(
                jsonrpc="2.0", id=request_id, result=result.model_dump(by_alias=True, exclude_none=True)
            )
        if method is not None and request_id is None:
            return None
        return types.JSONRPCError(
            jsonrpc="2.0", id=request_id, error=types.ErrorData(code=-32600, message=text)
        )
    try:
        json.loads(line)
    except ValueError:
        return types.JSONRPCError(
            jsonrpc="2.0",
            id=None,
            error=types.ErrorData(code=-32700, message="Parse error: the line is not valid JSON"),
        )
    if method is not None and request_id is None:
        return None  # a notification is never answered
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=types.ErrorData(
            code=-32600,
            message="Invalid Request: not a JSON-RPC 2.0 request, notification or response "
            "(one JSON object per line, with jsonrpc '2.0'; batches are not supported)",
        ),
    )


def refused_line(item: Exception) -> str | None:
    """The line a parse error was raised for: the raw text when it was not JSON, else the JSON value
    the parser read but could not take as a JSON-RPC message (an object reduced to its id and method)."""
    if not isinstance(item, ValidationError):
        return None
    errors = item.errors()
    if not errors:
        return None
    line = errors[0].get("input")
    if any(e.get("type") == "json_invalid" for e in errors):
        return line if isinstance(line, str) else None
    if isinstance(line, dict):
        line = {k: line[k] for k in ("id", "method") if k in line}
    try:
        return json.dumps(line)
    except (TypeError, ValueError):
        return None


class Answering:
    """The transport's read stream, less the lines the parser refused: those are answered here."""

    def __init__(self, inner: Any, write: Any) -> None:
        self._inner = inner
        self._write = write

    @property
    def last_context(self) -> Any:
        """The wrapped stream's last request context (the SDK reads it), if it has one."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        """The next message; a line the SDK's parser refused is answered with a JSON-RPC error here instead of
        being dropped."""
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item  # type: ignore[no-any-return]
            line = refused_line(item)
            reply = answer_to(line) if line is not None else None
            if reply is None:
                return item
            log.info("answered a line the JSON-RPC parser refused (%d characters)", len(line or ""))
            await self._write.send(SessionMessage(reply))

    async def aclose(self) -> None:
        """Close the wrapped stream."""
        await self._inner.aclose()

    def __aiter__(self) -> Answering:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:  # as the memory stream's own iteration ends
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Answering:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None


CHUNK = 1 << 16


def pollable(fd: int) -> bool:
    """Whether the event loop can wait on `fd` (a pipe or a socket; not a regular file or a terminal)."""
    if sys.platform == "win32":  # pragma: no cover - the SDK's threads serve Windows
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def read_lines(fd: int) -> AsyncIterator[str]:
    """The lines of a non-blocking descriptor as they arrive, newline kept (the last one may lack it), as
    the SDK's text wrapper gives them: UTF-8 with undecodable bytes replaced."""
    pending: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            break
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            pending.append(chunk[start : end + 1])
            yield b"".join(pending).decode("utf-8", errors="replace")
            pending.clear()
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending).decode("utf-8", errors="replace")


async def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to a non-blocking descriptor, waiting on it only while the pipe is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await anyio.wait_writable(fd)


@contextlib.asynccontextmanager
async def fd_stdio_server() -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's `stdio_server()` with its lines read and written on the event loop (module docstring)."""
    if not (pollable(0) and pollable(1)):
        async with stdio_server() as streams:
            yield streams
        return
    in_fd, out_fd, release = claim_stdio()
    was_blocking = os.get_blocking(in_fd), os.get_blocking(out_fd)
    read_writer, read_stream = context_streams(0)
    write_stream, write_reader = context_streams(0)

    async def reader() -> None:
        async with read_writer:
            async for line in read_lines(in_fd):
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except (ValidationError, ValueError) as exc:  # answered by Answering, as the SDK's are
                    await read_writer.send(exc)
                    continue
                await read_writer.send(SessionMessage(message))

    async def writer() -> None:
        async with write_reader:
            async for session_message in write_reader:
                text = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await write_all(out_fd, (text + "\n").encode())

    try:
        os.set_blocking(in_fd, False)
        os.set_blocking(out_fd, False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            yield read_stream, write_stream
    finally:
        with contextlib.suppress(OSError):  # the next reader or writer of these pipes expects blocking
            os.set_blocking(in_fd, was_blocking[0])
            os.set_blocking(out_fd, was_blocking[1])
        release()


async def run_stdio(mcp: MCPServer) -> None:
    """`mcp.run("stdio")`, answering every line (see the module's docstring)."""
    async with fd_stdio_server() as (read_stream, write_stream):
        await run_lowlevel(mcp, Answering(read_stream, write_stream), write_stream)
