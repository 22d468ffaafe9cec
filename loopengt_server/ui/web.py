"""The web view's HTTP side: the page, its static files, a JSON/SSE API over `Runs`, and the actions.

Served alone by `loopengt ui` or mounted at `/ui` in the streamable-HTTP server; either way every request
passes the server's checks first (`Guard`): the Host (and, when sent, Origin) must be one the server
accepts (DNS-rebinding protection, the same settings as /mcp), the API needs the bearer token when
LOOPENGT_TOKEN is set, and an action (a POST) must be JSON (a cross-site form cannot send it without a
CORS preflight, which is never granted) and not come from another site (`Sec-Fetch-Site`). The page
itself holds no data, so it loads without the token and asks for it when the API refuses.
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.transport_security import (
    RequestBodyLimitMiddleware,
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.service.runs import Runs
from loopengt_core.service.workspace import diff as git_diff
from loopengt_server.ui.feed import Feed, Subscription
from loopengt_server.ui.fold import TaskFold
from loopengt_server.ui.report import markdown_report
from loopengt_server.ui.watch import RunWatch, runs_list

log = logging.getLogger("loopengt.ui")
STATIC = Path(__file__).parent / "static"
KEEPALIVE_SECONDS = 15.0
MAX_BODY_BYTES = 4 * 1024 * 1024  # an action's body: a reason or a comment (each also limited by Runs)
_STATUS = {"not_found": 404, "invalid_argument": 400, "conflict": 409, "too_large": 413}

Verify = Callable[[str], Awaitable[bool]]


class Guard:
    """The checks every request passes (see the module docstring)."""

    def __init__(self, security: TransportSecuritySettings, verify: Verify | None) -> None:
        self.transport = TransportSecurityMiddleware(security)
        self.verify = verify

    async def refuse(self, request: Request, *, api: bool) -> Response | None:
        """The error response for a request the web view must refuse (a bad host or origin, a cross-site
        action, an API call without the token); None to serve it."""
        is_post = request.method == "POST"
        found = await self.transport.validate_request(request, is_post=is_post)
        if found is not None:
            why = bytes(found.body).decode()
            if "Content-Type" in why:
                return _error("an action is a JSON body (Content-Type: application/json)", found.status_code)
            return _error(f"{why}: the web view answers its own pages on this server only", found.status_code)
        if is_post and request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return _error("actions are accepted from this server's own page only", 403)
        if api and self.verify is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token or not await self.verify(token):
                response = _error(
                    "this view needs the token: the server was started with LOOPENGT_TOKEN", 401
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return None


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def ui_app(runs: Runs, *, security: TransportSecuritySettings, verify: Verify | None = None) -> Starlette:
    """The web view over `runs` (mount it at /ui; its URLs are relative)."""
    view = _View(runs, verify is not None)
    guard = Guard(security, verify)

    def endpoint(
        handler: Callable[[Request], Awaitable[Response]], *, api: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            refused = await guard.refuse(request, api=api)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except LoopengtError as exc:
                return _error(exc.message, _STATUS.get(exc.code, 409))
            except Exception:
                log.exception("web view request failed: %s %s", request.method, request.url.path)
                return _error("internal error (the server's log has the details)", 500)

        return guarded

    routes = [
        Route("/", endpoint(view.page, api=False)),
        Route("/static/{name}", endpoint(view.static, api=False)),
        Route("/api/me", endpoint(view.whoami)),
        Route("/api/runs", endpoint(view.list_runs)),
        Route("/api/stream", endpoint(view.runs_stream)),
        Route("/api/runs/{run_id}/stream", endpoint(view.run_stream)),
        Route("/api/runs/{run_id}/diff", endpoint(view.diff)),
        Route("/api/runs/{run_id}/report", endpoint(view.report)),
        Route("/api/runs/{run_id}/approve", endpoint(view.approve), methods=["POST"]),
        Route("/api/runs/{run_id}/cancel", endpoint(view.cancel), methods=["POST"]),
        Route("/api/runs/{run_id}/checkpoint", endpoint(view.checkpoint), methods=["POST"]),
    ]
    limit = Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES)
    app = Starlette(routes=routes, middleware=[limit])
    app.state.feed = view.feed  # `serve` closes it on shutdown, ending the open pages' streams
    return app


class _View:
    """The handlers: reads go through `Runs` in a worker thread; actions are the CLI's, `via` web."""

    def __init__(self, runs: Runs, token: bool) -> None:
        self.runs = runs
        self.token = token
        self.feed = Feed(runs.reader)
        self.person = _person()

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={**_NO_STORE, **_PAGE_POLICY})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _static_names():
            return _error(f"no static file {name!r}", 404)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def whoami(self, request: Request) -> Response:
        return JSONResponse({"person": self.person, "token": self.token})

    async def list_runs(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        return JSONResponse(await anyio.to_thread.run_sync(lambda: runs_list(self.runs, status)))

    async def runs_stream(self, request: Request) -> Response:
        status = request.query_params.get("status") or None

        async def read() -> dict[str, Any] | None:
            return {"runs": await anyio.to_thread.run_sync(lambda: runs_list(self.runs, status))}

        return await _stream(self.feed.subscribe(None), read, read)

    async def run_stream(self, request: Request) -> Response:
        watch = RunWatch(self.runs, request.path_params["run_id"])
        await anyio.to_thread.run_sync(self.runs.get_run, watch.run_id)  # no such run: refused now

        async def first() -> dict[str, Any] | None:
            return await anyio.to_thread.run_sync(watch.snapshot)

        async def read() -> dict[str, Any] | None:
            return await anyio.to_thread.run_sync(watch.update)

        return await _stream(self.feed.subscribe(watch.run_id), first, read)

    async def diff(self, request: Request) -> Response:
        run_id, task_id = request.path_params["run_id"], request.query_params.get("task", "")
        return PlainTextResponse(
            await anyio.to_thread.run_sync(lambda: _task_diff(self.runs, run_id, task_id))
        )

    async def report(self, request: Request) -> Response:
        text = await anyio.to_thread.run_sync(
            lambda: markdown_report(self.runs, request.path_params["run_id"])
        )
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    async def approve(self, request: Request) -> Response:
        body = await _body(request)
        approved = body.get("approved")
        if not isinstance(approved, bool):
            raise InvalidArgument("approved must be true (approve) or false (reject)")
        by = _text(body, "by") or self.person
        if len(by) > 200:
            raise InvalidArgument("by must be a name of at most 200 characters")
        view = await anyio.to_thread.run_sync(
            lambda: self.runs.approve(
                request.path_params["run_id"],
                approved=approved,
                comment=_text(body, "comment"),
                by=by,
                via="web",
                task_id=_text(body, "task_id"),
            )
        )
        return JSONResponse({"run": view.model_dump(mode="json")})

    async def cancel(self, request: Request) -> Response:
        reason = _text(await _body(request), "reason") or "cancelled from the web view"
        view = await anyio.to_thread.run_sync(
            lambda: self.runs.cancel_run(request.path_params["run_id"], reason)
        )
        return JSONResponse({"run": view.model_dump(mode="json")})

    async def checkpoint(self, request: Request) -> Response:
        label = _text(await _body(request), "label")
        info = await anyio.to_thread.run_sync(
            lambda: self.runs.checkpoint(request.path_params["run_id"], label)
        )
        return JSONResponse({"checkpoint": info.model_dump(mode="json")})


_NO_STORE = {"Cache-Control": "no-store"}
# The page runs only its own scripts and is never framed by another site (no clicking its buttons from
# inside someone else's page). Mermaid styles its drawing inline, hence style-src 'unsafe-inline'.
_PAGE_POLICY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _static_names() -> set[str]:
    return {p.name for p in STATIC.iterdir() if p.is_file()}


def _person() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "a person"


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise InvalidArgument("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be text")
    return value


def _task_diff(runs: Runs, run_id: str, task_id: str) -> str:
    """The change a task's submission made to the run's files: its recorded tree against the one before."""
    view = runs.get_run(run_id)
    if view.workspace is None:
        raise InvalidArgument(f"run '{run_id}' records no files (not a git-aware run)")
    fold = TaskFold()
    fold.add(runs.trace(run_id))
    task = fold.tasks.get(task_id)
    if task is None:
        raise InvalidArgument(f"task must be one of the run's tasks (got {task_id!r})")
    if task.tree is None or task.base_tree is None:
        raise InvalidArgument(f"task {task_id} recorded no files")
    return git_diff(view.workspace.root, task.base_tree, task.tree) or "(no change to the files)\n"


Read = Callable[[], Awaitable[dict[str, Any] | None]]


async def _stream(sub: Subscription, first: Read, read: Read) -> StreamingResponse:
    """Server-Sent Events: `snapshot` now, then `update` each time the feed says the run(s) changed.

    `sub` listens before `first()` reads, so a change made in between is told, never lost.
    """
    try:
        snapshot = await first()
    except BaseException:
        sub.close()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            yield f"event: snapshot\ndata: {_json(snapshot)}\n\n"
            while True:
                if not await sub.wait(KEEPALIVE_SECONDS):
                    yield ": still here\n\n"
                    continue
                if sub.feed.closed:
                    return
                try:
                    found = await read()
                except LoopengtError as exc:
                    yield f"event: problem\ndata: {_json({'error': exc.message})}\n\n"
                    continue
                if found is not None:
                    yield f"event: update\ndata: {_json(found)}\n\n"
        finally:
            sub.close()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={**_NO_STORE, "X-Accel-Buffering": "no"}
    )
