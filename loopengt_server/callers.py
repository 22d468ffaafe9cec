"""Who is calling: the identity recorded with each submitted output (`submitted_by`).

A judge gate's task is refused from whoever submitted the output it judges, so the identity must be one
the client cannot choose: the bearer token's principal when the server has tokens (HTTP with
LOOPENGT_TOKEN), else the MCP connection itself (each session over HTTP, each stdio process's one
connection) under a random id the server gives it. Stateless HTTP without tokens opens a session per
request, so there no caller lasts beyond one call and nothing can be refused.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token

_sessions: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def principal() -> str | None:
    """The authenticated principal of this request (HTTP with LOOPENGT_TOKEN), else None."""
    token = get_access_token()
    return None if token is None else (token.subject or token.client_id)


def caller(session: Any) -> str:
    """This request's caller: `principal:<name>` with a bearer token, else `mcp-session:<random id>` of
    its connection (`session`: the request's ServerSession), the same for every call on it."""
    found = principal()
    if found is not None:
        return f"principal:{found}"
    with _lock:
        known = _sessions.get(session)
        if known is None:
            known = _sessions[session] = secrets.token_hex(8)
    return f"mcp-session:{known}"
