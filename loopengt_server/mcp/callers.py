"""Who is calling: the identity recorded with each submitted output (`submitted_by`).

A judge gate's task is refused from whoever submitted the output it judges, so the identity must be one
the client cannot choose:

- the bearer token's principal, when the server has tokens (HTTP with LOOPENGT_TOKEN);
- over stdio, the server process: it serves exactly one client (both protocol eras);
- over HTTP in the handshake era, the MCP session (the connection the session manager keeps for it);
- over HTTP in the 2026-07-28 era without tokens, nobody: that protocol has no sessions (each request
  is a connection of its own), so no caller lasts beyond one call and nothing can be refused (None).
"""

from __future__ import annotations

import secrets
import threading
import weakref
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from loopengt_server.mcp.sdk import session_connection

_PROCESS = secrets.token_hex(8)  # a stdio server's one client
_connections: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def principal() -> str | None:
    """The authenticated principal of this request (HTTP with LOOPENGT_TOKEN), else None."""
    token = get_access_token()
    return None if token is None else (token.subject or token.client_id)


def caller(request_context: Any) -> str | None:
    """This request's caller (`request_context`: the tool call's ServerRequestContext): `principal:<name>`,
    `mcp-session:<id>` (a stdio process's or a handshake-era HTTP session's), or None when unknown."""
    found = principal()
    if found is not None:
        return f"principal:{found}"
    if request_context.request is None:  # stdio: no HTTP request under the call
        return f"mcp-session:{_PROCESS}"
    if request_context.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    connection = session_connection(request_context.session)  # one per handshake-era session (MCP_SDK.md)
    with _lock:
        known = _connections.get(connection)
        if known is None:
            known = _connections[connection] = getattr(connection, "session_id", None) or secrets.token_hex(8)
    return f"mcp-session:{known}"
