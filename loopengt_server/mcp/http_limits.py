"""What the HTTP transports need beyond uvicorn's defaults: deadlines for reading a request and a session cap.

uvicorn (0.55) never times out a request that is still arriving: its only timer, `timeout_keep_alive`, runs
between requests and is cancelled by the first byte of the next one, so a client sending headers a byte at
a time (or a body that never ends) holds a connection and its buffers forever. The protocols here are
uvicorn's with two deadlines: a request's headers must be complete within LOOPENGT_HTTP_HEADER_TIMEOUT
seconds of the connection opening or the previous response ending, and its body within
LOOPENGT_HTTP_BODY_TIMEOUT seconds of the headers; otherwise the connection gets a 408 and is closed. Long
answers (SSE streams, a tool call that waits) are not limited: the deadlines cover only what the client sends.

Two parsers: httptools (llhttp, C; uvicorn's own choice when installed, ~0.4 ms less server CPU a tool call
than h11 in bench/concurrency.py) and h11 (pure Python), used where httptools is not installed. h11 refuses
headers beyond 16 KiB by itself; `GuardedHttpToolsProtocol` holds httptools to the same bound (431), since
llhttp buffers a header line of any length.

Sessions: LOOPENGT_MAX_SESSIONS caps open sessions (streamable HTTP: the SDK's own cap; SSE: one session
per open stream, counted here); beyond it a new session gets a 503 naming the variable. A session is bound
to the token that opened it: the SDK refuses a session id presented with another principal, and
`BearerToken` gives each configured token a principal of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from loopengt_core.model.errors import InvalidArgument

log = logging.getLogger("loopengt.http")

HEADER_TIMEOUT_ENV = "LOOPENGT_HTTP_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "LOOPENGT_HTTP_BODY_TIMEOUT"
MAX_SESSIONS_ENV = "LOOPENGT_MAX_SESSIONS"


def _number(name: str, default: float, *, whole: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = 0
    if not value > 0 or value == float("inf"):
        kind = "a whole number" if whole else "a number of seconds"
        raise InvalidArgument(f"{name}={raw!r}: use {kind} greater than 0 (default {default:g})")
    return value


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    max_sessions: int = 100

    @classmethod
    def from_env(cls) -> HttpLimits:
        """The limits the environment sets; InvalidArgument naming the variable for a bad value."""
        return cls(
            header_timeout_seconds=_number(HEADER_TIMEOUT_ENV, cls.header_timeout_seconds),
            body_timeout_seconds=_number(BODY_TIMEOUT_ENV, cls.body_timeout_seconds),
            max_sessions=int(_number(MAX_SESSIONS_ENV, cls.max_sessions, whole=True)),
        )


class ReadDeadlines:
    """The read deadlines of one connection (see the module docstring), for a uvicorn protocol class.

    The protocol says which part of a request it is reading (`_enter("headers" | "body" | None)`) and
    whether a 408 may still be written (`_may_answer`); `limits` is set by `guarded`.
    """

    limits = HttpLimits()
    _phase: str | None = None
    _deadline: asyncio.TimerHandle | None = None
    # provided by uvicorn's protocol classes
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any
    cycle: Any

    def _enter(self, phase: str | None) -> None:
        """(Re)arm the deadline for the part of a request being read: its headers, its body, or none."""
        if phase == self._phase:
            return
        self._disarm()
        self._phase = phase
        if phase is not None and not self.transport.is_closing():
            seconds = (
                self.limits.header_timeout_seconds if phase == "headers" else self.limits.body_timeout_seconds
            )
            self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _may_answer(self) -> bool:
        """Whether no response has begun on the connection, so a 408 can still be sent."""
        return self.cycle is None or not self.cycle.response_started

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        variable = HEADER_TIMEOUT_ENV if phase == "headers" else BODY_TIMEOUT_ENV
        log.info(
            "closing %s: request %s not complete within %g s (%s)", self.client, phase, seconds, variable
        )
        if self._may_answer():
            write_refusal(
                self.transport, 408, f"request {phase} not received within {seconds:g} s ({variable})"
            )
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def write_refusal(transport: asyncio.Transport, status: int, text: str) -> None:
    """Write a plain-text error response announcing that the connection closes (the caller closes it)."""
    reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
    body = f"{text}\n".encode()
    transport.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (status, reason, len(body), body)
    )


class GuardedH11Protocol(ReadDeadlines, H11Protocol):
    """uvicorn's h11 protocol plus read deadlines; the phase is read from h11's state of the client."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        """After each response, arm the read deadline for the next request's headers (a kept-alive connection
        must not idle unbounded)."""
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        state = self.conn.their_state
        self._enter("headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None)

    def _may_answer(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and super()._may_answer()


def guarded(limits: HttpLimits) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http=` with these limits (uvicorn instantiates it per connection):
    httptools' where it is installed, else h11's."""
    base: type[asyncio.Protocol] = GuardedH11Protocol
    try:  # uvicorn's faster parser, an optional wheel: without it h11 (pure Python) serves alike
        from loopengt_server.mcp.http_httptools import GuardedHttpToolsProtocol
    except ImportError:
        log.debug("httptools is not installed: parsing HTTP with h11")
    else:
        base = GuardedHttpToolsProtocol
    return type(f"Loopengt{base.__name__}", (base,), {"limits": limits})


class SessionCap:
    """ASGI middleware: at most `max_sessions` open SSE streams, and a 503 that names the variable.

    Streamable HTTP sessions are capped by the SDK's session manager, which answers 503 "Too many open
    sessions"; that answer is restated here in the same words as the SSE one.
    """

    def __init__(self, app: ASGIApp, *, max_sessions: int, sse_path: str = "/sse") -> None:
        self.app = app
        self.max_sessions = max_sessions
        self.sse_path = sse_path
        self.open_streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"] == self.sse_path:
            if self.open_streams >= self.max_sessions:
                await self._refuse(send)
                return
            self.open_streams += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.open_streams -= 1
            return
        await self.app(scope, receive, _RestateCap(send, self))

    def message(self) -> str:
        """Why a new session is refused, and what to do."""
        return (
            f"too many open sessions: {self.max_sessions} are open, the limit set by {MAX_SESSIONS_ENV}; "
            "close a session (or let an idle one expire) and connect again, or raise the limit"
        )

    def body(self) -> bytes:
        """The JSON-RPC error body sent with the refusal."""
        error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": self.message()}}
        return json.dumps(error).encode()

    async def _refuse(self, send: Send) -> None:
        log.warning("refusing a session: %s", self.message())
        body = self.body()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _RestateCap:
    """Replaces the body of the SDK's 503 for a session over the cap with `SessionCap.body()`."""

    def __init__(self, send: Send, cap: SessionCap) -> None:
        self.send, self.cap, self.replacing = send, cap, False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            self.replacing = True
            body = self.cap.body()
            headers: list[Any] = [
                (k, v) for k, v in message.get("headers", []) if k.lower() not in (b"content-length",)
            ]
            await self.send({**message, "headers": [*headers, (b"content-length", b"%d" % len(body))]})
            await self.send({"type": "http.response.body", "body": body, "more_body": True})
            return
        if self.replacing and message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await self.send({"type": "http.response.body", "body": b""})
            return
        await self.send(message)
