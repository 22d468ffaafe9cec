"""uvicorn's httptools protocol with loopengt's read deadlines (`http_limits`): imported only where the
httptools wheel is installed (`http_limits.guarded` falls back to h11 without it)."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from loopengt_server.mcp.http_limits import ReadDeadlines, log, write_refusal


class GuardedHttpToolsProtocol(ReadDeadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol plus read deadlines and h11's bound on a request's headers.

    The phase follows the parser's callbacks: headers from the connection's start (or the end of the
    previous response) to `on_headers_complete`, then the body to `on_message_complete`. Bytes received
    while headers are incomplete are counted; past the bound the connection gets a 431 and is closed.
    """

    max_head_bytes = 16 * 1024  # h11's own bound (its DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)
    _head_bytes = 0
    _in_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._in_body and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            log.info("closing %s: request headers over %d bytes", self.client, self.max_head_bytes)
            write_refusal(
                self.transport, 431, f"request headers are larger than {self.max_head_bytes} bytes, the limit"
            )
            self._disarm()
            self.transport.close()

    def on_headers_complete(self) -> None:
        """The head is in: the body's read deadline starts, the head's byte count resets."""
        self._head_bytes, self._in_body = 0, True
        self._enter("body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request is in: no read deadline runs until the next request's head begins."""
        self._head_bytes, self._in_body = 0, False
        self._enter(None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """After a response, arm the header deadline for the next request, unless one is already read and
        queued (pipelined) or the body of this one is still arriving."""
        queued = bool(self.pipeline)
        super().on_response_complete()
        if not queued and self._phase is None:
            self._enter("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
