"""`loopengt ui`: the web view on its own, on 127.0.0.1 and a free port, reading the server's store."""

from __future__ import annotations

import os
import socket
import sys
import webbrowser
from types import FrameType

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs
from loopengt_core.store import open_store
from loopengt_server.mcp.http_limits import HttpLimits, guarded
from loopengt_server.ui.feed import Feed
from loopengt_server.ui.web import Verify, ui_app


def token_check(token: str | None) -> Verify | None:
    """The bearer check of LOOPENGT_TOKEN (the MCP server's own), or None when no token is set."""
    if not token:
        return None
    from loopengt_server.mcp.app import BearerToken

    verifier = BearerToken(token)

    async def verify(given: str) -> bool:
        return await verifier.verify_token(given) is not None

    return verify


def mounted(runs: Runs, host: str, token: str | None) -> Mount:
    """The view as a route for a Starlette app: /ui, behind the server's Host/Origin checks and token."""
    from loopengt_server.mcp.app import transport_security

    return Mount("/ui", app=ui_app(runs, security=transport_security(host), verify=token_check(token)))


def _feed(route: Mount) -> Feed:
    app = route.app
    assert isinstance(app, Starlette)
    feed: Feed = app.state.feed
    return feed


class _Server(uvicorn.Server):
    """uvicorn's server that, asked to stop, first ends the pages' event streams (they never end alone)."""

    def __init__(self, config: uvicorn.Config, feed: Feed) -> None:
        super().__init__(config)
        self.feed = feed

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.feed.close()
        super().handle_exit(sig, frame)


def serve_ui(*, store: str, host: str, port: int, open_browser: bool, root: str | None = None) -> None:
    """Serve until interrupted; prints the page's address first (stdout, one line, flushed)."""
    from loopengt_server.mcp.app import is_loopback

    token = os.environ.get("LOOPENGT_TOKEN") or None
    if token is None and not is_loopback(host):
        raise LoopengtError(
            f"refusing to serve the web view on {host} (not a loopback address) without a token: set "
            "LOOPENGT_TOKEN, or bind --host 127.0.0.1"
        )
    runs = Runs(open_store(store), cwd=root)
    view = mounted(runs, host, token)
    app = Starlette(routes=[Route("/", lambda _: RedirectResponse("/ui/")), view])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # before the address is printed: a client that reads it may connect at once
    except OSError as exc:
        raise LoopengtError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/ui/"
    print(f"loopengt ui: {url}" + (" (the page asks for LOOPENGT_TOKEN)" if token else ""), flush=True)
    if open_browser:
        webbrowser.open(url + (f"#token={token}" if token else ""))
    limits = HttpLimits.from_env()
    # Open pages hold event streams that never end by themselves: on Ctrl-C, close them after a second.
    config = uvicorn.Config(app, http=guarded(limits), log_level="warning", timeout_graceful_shutdown=1)
    try:
        anyio.run(_Server(config, _feed(view)).serve, [sock])
    except KeyboardInterrupt:
        print("loopengt ui: stopped", file=sys.stderr)
