"""The stdio transport, answering lines that are not JSON-RPC messages as the specification asks.

The SDK's stdio reader turns a line that fails to parse into an exception on the read stream, and its
dispatcher drops that with a debug log: the client never hears back and waits out its timeout. JSON-RPC 2.0
says such a line gets an error response with `"id": null`: -32700 (parse error) for text that is not
JSON, -32600 (invalid request) for JSON that is not a request, notification or response. `serve_stdio`
keeps the SDK's stdio transport (which also moves fds 0 and 1 away from handlers and child processes) and
puts `AnswerMalformed` between it and the server. The SDK offers no hook for this, so it runs the
low-level server itself, as `app._serve_log_level` already reaches it.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

log = logging.getLogger("loopengt.stdio")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def error_for(exc: Exception) -> types.ErrorData:
    """The JSON-RPC error a line that failed to parse deserves (without echoing the line)."""
    not_json = isinstance(exc, ValidationError) and any(e.get("type") == "json_invalid" for e in exc.errors())
    if not_json:
        return types.ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON")
    return types.ErrorData(
        code=INVALID_REQUEST,
        message="Invalid Request: not a JSON-RPC 2.0 request, notification or response "
        "(one JSON object per line, with jsonrpc '2.0'; batches are not supported)",
    )


class AnswerMalformed:
    """A read stream that answers each unparsable line itself and passes only messages on."""

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], answers: WriteStream[SessionMessage]
    ) -> None:
        self._inner = inner
        self._answers = answers

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message (the SDK's context streams carry it)."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            log.warning("answering a malformed line on stdin: %s", type(item).__name__)
            error = types.JSONRPCError(jsonrpc="2.0", id=None, error=error_for(item))
            try:
                await self._answers.send(SessionMessage(error))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return item  # shutting down: let the dispatcher see it as before

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


async def serve_stdio(mcp: MCPServer) -> None:
    """What `mcp.run("stdio")` does, with malformed lines answered."""
    server = mcp._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        await server.run(
            AnswerMalformed(read_stream, write_stream), write_stream, server.create_initialization_options()
        )
