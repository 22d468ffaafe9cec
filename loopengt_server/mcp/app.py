"""Building and serving the loopengt MCP server on stdio, streamable HTTP (/mcp) or SSE (/sse)."""

from __future__ import annotations

import functools
import gc
import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
import mcp_types as types
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute

from loopengt_core.model import gatetypes
from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs
from loopengt_core.store import open_store
from loopengt_server.mcp.notify import CountingBus, Notifier
from loopengt_server.mcp.prompts import register_prompts
from loopengt_server.mcp.resources import register_resources
from loopengt_server.mcp.run_context import store_context
from loopengt_server.mcp.sdk import add_request_handler
from loopengt_server.mcp.stdio import run_stdio
from loopengt_server.mcp.tasks_extension import TasksExtension
from loopengt_server.mcp.tools import register_tools, view_result

if TYPE_CHECKING:
    from loopengt_server.mcp.http_limits import HttpLimits  # uvicorn's h11 protocol: HTTP only

Transport = Literal["stdio", "streamable-http", "sse"]
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_REQUEST_BODY_BYTES = (
    32 * 1024 * 1024
)  # above the 4 MiB output limit, so that limit answers with a tool error

INSTRUCTIONS = (
    "loopengt runs declarative loops (loop.yaml) for coding agents. start_run, then do each open task and submit "
    "it with step; the server checks the output (schemas, gates, tests, approval) and answers with the next task "
    "or feedback. Always follow next_action. Runs survive restarts: get_run or resume picks one up again."
)


def _version() -> str:
    try:
        return version("loopengt")
    except PackageNotFoundError:
        return "0"


class BearerToken:
    """Accepts the tokens in LOOPENGT_TOKEN (one, or several separated by commas; compared in constant time).

    Each token is a principal of its own (`subject` "token-N", its place in the list), and the SDK binds
    a session to the principal that opened it: a session id is refused with any other token.
    """

    def __init__(self, token: str) -> None:
        self._tokens = [t.strip().encode() for t in token.split(",") if t.strip()]

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token for a known bearer token, else None. Every known token is compared in constant
        time, so timing tells nothing about which one nearly matched."""
        given = token.encode()
        found = None
        for number, known in enumerate(self._tokens, start=1):
            if hmac.compare_digest(given, known) and found is None:  # no early exit: same time for each
                found = number
        if found is None:
            return None
        return AccessToken(token=token, client_id="loopengt", scopes=[], subject=f"token-{found}")


def build_server(runs: Runs, *, token: str | None = None) -> MCPServer:
    """The MCP server over `runs`: its tools, resources, prompts, subscriptions and the tasks extension, with
    the watcher that announces changes. `token` (or LOOPENGT_TOKEN) guards the HTTP transports."""
    bus = CountingBus()
    notifier = Notifier(runs, bus)
    tasks_extension = TasksExtension(runs, functools.partial(view_result, runs))

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks, tasks_extension.running():
            tasks.start_soon(notifier.watch)
            yield
            tasks.cancel_scope.cancel()
        if runs.tracer is not None:  # export this session's spans now: the process may be stopped, not exit
            await anyio.to_thread.run_sync(runs.tracer.flush)

    auth = {}
    if token:
        auth = {
            "token_verifier": BearerToken(token),
            "auth": AuthSettings.model_validate(
                {"issuer_url": "http://127.0.0.1", "resource_server_url": None}
            ),
        }
    mcp = MCPServer(
        "loopengt",
        version=_version(),
        instructions=INSTRUCTIONS,
        subscriptions=bus,
        lifespan=lifespan,
        log_level="WARNING",
        extensions=[tasks_extension],
        **auth,  # type: ignore[arg-type]
    )
    notifier.install(mcp)
    _serve_log_level(mcp)
    register_tools(mcp, runs, notifier)
    register_resources(mcp, runs)
    register_prompts(mcp, context=lambda run_id: store_context(runs.reader, run_id))
    return mcp


def _serve_log_level(mcp: MCPServer) -> None:
    """logging/setLevel (handshake era): sets the server's own log level; logs go to stderr, not the client."""

    async def set_level(ctx: ServerRequestContext, params: types.SetLevelRequestParams) -> types.EmptyResult:
        level = logging.getLevelNamesMapping().get(str(params.level).upper(), logging.WARNING)
        logging.getLogger("loopengt").setLevel(level)
        return types.EmptyResult()

    add_request_handler(mcp, "logging/setLevel", types.SetLevelRequestParams, set_level)


def transport_security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: loopback names always; other names only when listed in LOOPENGT_ALLOWED_HOSTS."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    extra = [h.strip() for h in os.environ.get("LOOPENGT_ALLOWED_HOSTS", "").split(",") if h.strip()]
    if host not in LOOPBACK and host not in ("0.0.0.0", "::"):
        extra.append(host)
    hosts += [f"{h}:*" if ":" not in h else h for h in extra]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (a host name counts as not: it may resolve to anything)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def serve(
    *,
    transport: Transport,
    host: str,
    port: int,
    store: str,
    allow_inline_commands: bool,
    root: Path | None = None,
) -> None:
    """Serve the project at `root` (default: the working directory): clients' paths stay inside it.

    Raises LoopengtError before binding when an HTTP transport would listen beyond this machine
    without LOOPENGT_TOKEN: anyone who can reach the port could run the project's loops.
    """
    token = os.environ.get("LOOPENGT_TOKEN") or None
    if transport != "stdio" and token is None and not is_loopback(host):
        raise LoopengtError(
            f"refusing to serve on {host} (not a loopback address) without a token: set LOOPENGT_TOKEN "
            "(clients then send Authorization: Bearer <token>), or bind --host 127.0.0.1"
        )
    gatetypes.load_plugins()  # a broken gate plugin is logged now (and shown by doctor), never raised
    runs = Runs(open_store(store), cwd=root, allow_inline_commands=allow_inline_commands, confine_paths=True)
    mcp = build_server(runs, token=token)
    threading.Thread(target=_recover, args=(runs,), name="loopengt-recover", daemon=True).start()
    try:
        if transport == "stdio":
            anyio.run(run_stdio, mcp)
        else:
            from loopengt_server.mcp.http_limits import HttpLimits
            from loopengt_server.ui.serve import mounted

            # The web view reads through a store of its own: its change feed must not take the notifier's.
            view = mounted(Runs(open_store(store), cwd=root, confine_paths=True), host, token)
            limits = HttpLimits.from_env()
            settle_heap()
            anyio.run(
                functools.partial(_serve_http, mcp, transport, host=host, port=port, limits=limits, ui=view),
                backend_options=loop_options(),
            )
    finally:
        # the commands running here end with the server, unrecorded: their leases name this process, which
        # is gone when the next server looks, so that server runs them again (the trace shows both)
        runs.close()


def settle_heap() -> None:
    """Move what start-up built (modules, schemas, the server) out of the garbage collector's sight.

    A full collection walks every object the process holds; a server's are mostly start-up's, alive for
    good, so each full collection re-walked ~50 ms of them (`gc.callbacks`, 8 HTTP clients). Frozen, they
    are never walked again; what requests allocate is collected as before.
    """
    gc.collect()
    gc.freeze()


def loop_options() -> dict[str, object]:
    """anyio's backend options: uvloop's event loop where its wheel is installed (uvicorn's own choice:
    ~0.4 ms less server CPU a tool call over HTTP, bench/concurrency.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # Windows, or an interpreter without the wheel: asyncio's loop serves alike
        return {}
    return {"loop_factory": uvloop.new_event_loop}


def _recover(runs: Runs) -> None:
    """Run what no one runs: commands due and unclaimed, or claimed by a server that died mid-gate."""
    try:
        started = runs.recover()
    except Exception:  # the server serves on; the next call on such a run starts its commands
        logging.getLogger("loopengt").exception("recovering due commands failed")
        return
    if started:
        logging.getLogger("loopengt").warning("running the due commands of %s", ", ".join(started))


async def _serve_http(
    mcp: MCPServer,
    transport: Transport,
    *,
    host: str,
    port: int,
    limits: HttpLimits,
    ui: BaseRoute | None = None,
) -> None:
    """The SDK's app under uvicorn with read deadlines and a session cap (`http_limits`); SDK's own run()
    offers neither. `ui`: the web view's route (/ui), added to the app's own."""
    import uvicorn

    from loopengt_server.mcp.http_limits import SessionCap, guarded

    security = transport_security(host)
    if transport == "sse":
        app = mcp.sse_app(
            transport_security=security, host=host, max_request_body_size=MAX_REQUEST_BODY_BYTES
        )
    else:
        app = mcp.streamable_http_app(
            transport_security=security,
            host=host,
            max_request_body_size=MAX_REQUEST_BODY_BYTES,
            max_sessions=limits.max_sessions,
        )
    if ui is not None:
        app.router.routes.append(ui)
    config = uvicorn.Config(
        SessionCap(app, max_sessions=limits.max_sessions),
        host=host,
        port=port,
        http=guarded(limits),
        log_level=mcp.settings.log_level.lower(),
        access_log=False,  # a line a request on stdout, unread; errors are still logged on stderr
        # SIGTERM: open streams (a session's GET, a long get_run wait) may hold the exit this long at most;
        # every acknowledged step is already durable, and a retried call gets the same answer
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve()
