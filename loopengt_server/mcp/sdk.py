"""The MCP SDK's internals that loopengt reaches, in one place, and why.

mcp 2.3's `MCPServer` has no public way to do five things loopengt needs (checked in the installed
source; see shared/MCP_SDK.md). Each is one small function here, so that an SDK upgrade that moves them
breaks in one module, and the rest of the server only uses public names (tests/test_sdk_boundary.py
fails on a private SDK name read anywhere else, and on one read here that this docstring does not name):

- `add_request_handler`, through `MCPServer._lowlevel_server`: serve methods MCPServer leaves out
  (`logging/setLevel`, `resources/subscribe`, `resources/unsubscribe`). The low-level server has the
  registry, MCPServer does not expose it, and an `Extension`'s `MethodBinding` refuses spec methods (its
  docstring points to the low-level `add_request_handler` for them).
- `run_lowlevel`, through `MCPServer._lowlevel_server`: run the low-level server over a read stream of our
  own (the stdio transport that answers lines the SDK's parser drops; loopengt_server.mcp.stdio).
- `registered_tools` and `set_output_schema`, through `MCPServer._tool_manager` and the tool's `__dict__`:
  give registered tools hand-written output schemas (the generated ones make tools/list too long and
  client-side validation slow; loopengt_server.mcp.tools). `MCPServer.list_tools` builds new protocol objects
  from them each call, and `add_tool` takes no output schema; a tool's `output_schema` is a cached property,
  so its cached value is dropped from `__dict__`.
- `on_disconnect`, through `ServerSession._connection`: drop a session's subscriptions when its connection
  closes (the session has no public close callback).
- `session_connection`, through `ServerSession._connection`: the one connection a handshake-era session
  keeps, as the caller's identity for judge gates (loopengt_server.mcp.callers); the session exposes no id of
  its own.
- `claim_stdio`, through the SDK stdio module's `_claim_fd`, `_open_stdin_diversion` and
  `_open_stdout_diversion`, and `context_streams`: the stdio transport's claim of fds 0 and 1 (the wire
  moves to private descriptors, stray output goes to stderr) and its context-carrying streams, for a
  transport that reads and writes those descriptors on the event loop instead of in worker threads
  (loopengt_server.mcp.stdio): `stdio_server()` takes streams of its own only by skipping the claim.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server import stdio as sdk_stdio
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.shared._context_streams import create_context_streams


def add_request_handler(
    mcp: MCPServer, method: str, params_type: type[Any], handler: Callable[..., Awaitable[Any]]
) -> None:
    """Serve `method` with `handler(ctx, params)` on the server's low-level request registry."""
    mcp._lowlevel_server.add_request_handler(method, params_type, handler)


async def run_lowlevel(mcp: MCPServer, read_stream: Any, write_stream: Any) -> None:
    """Run the server's low-level loop over the given streams, with its usual initialization options."""
    lowlevel = mcp._lowlevel_server
    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def registered_tools(mcp: MCPServer) -> list[Any]:
    """The tools registered with `@mcp.tool()` (the SDK's Tool objects, mutable until served)."""
    return list(mcp._tool_manager.list_tools())


def set_output_schema(tool: Any, schema: dict[str, Any] | None) -> None:
    """Replace a registered tool's output schema (its `output_schema` is a cached property over
    `fn_metadata`, so the cached value is dropped too)."""
    tool.fn_metadata.output_schema = schema
    tool.__dict__.pop("output_schema", None)


def on_disconnect(session: ServerSession, callback: Callable[..., Any], *args: Any) -> None:
    """Call `callback(*args)` when the session's connection closes."""
    session._connection.exit_stack.callback(callback, *args)


def session_connection(session: ServerSession) -> Any:
    """The connection object behind a session (one per handshake-era session; identity, not to be used)."""
    return session._connection


def claim_stdio() -> tuple[int, int, Callable[[], None]]:
    """Claim fds 0 and 1 as `stdio_server()` does: the descriptors the wire is now read from and written
    to, and the function that gives fds 0 and 1 back (call it once, on the way out)."""
    stdin_buffer, restore_stdin = sdk_stdio._claim_fd(0, sys.stdin, "rb", sdk_stdio._open_stdin_diversion)
    try:
        stdout_buffer, restore_stdout = sdk_stdio._claim_fd(
            1, sys.stdout, "wb", sdk_stdio._open_stdout_diversion
        )
    except BaseException:
        if restore_stdin is not None:
            restore_stdin()
        raise

    def release() -> None:
        if restore_stdout is not None:
            restore_stdout()
        if restore_stdin is not None:
            restore_stdin()

    return stdin_buffer.fileno(), stdout_buffer.fileno(), release


def context_streams(size: int = 0) -> tuple[Any, Any]:
    """A send and a receive stream that carry the sender's contextvars, as the SDK's transports use."""
    return create_context_streams[Any](size)
