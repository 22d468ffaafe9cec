"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663, 2026-07-28): long calls as task handles.

The SDK (mcp 2.3) has the extension hook (`Extension`: new methods and a `tools/call` interceptor) but
no Tasks; this module is what it lacks. When a request's client capabilities list the extension,
`step`, `start_run` and `resume` (the calls that can make commands due) answer at once with
`resultType: "task"`; the call runs on in the server, and `tasks/get` gives its status and, once the
run's commands have settled, the answer the plain call would have given. `tasks/cancel` stops the
run's running commands (`Runs.stop_commands`, recorded as cancelled by "tasks/cancel"; the policy
then retries or fails the step). `tasks/update` acknowledges: loopengt never asks the client for
input inside a task (an approval waits durably in the run; see approvals.py). Clients that do not
list the extension get exactly the plain call. Tasks live in memory (`task_table`): the run is the
durable record, and `get_run` shows it after a restart.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs
from loopengt_server.mcp.callers import principal
from loopengt_server.mcp.progress import IN_TASK, progress_text
from loopengt_server.mcp.task_table import TaskRecord, TaskTable

log = logging.getLogger("loopengt.tasks")

TASKS = "io.modelcontextprotocol/tasks"
TASK_TOOLS = frozenset({"step", "start_run", "resume"})
SETTLE_POLL_SECONDS = 30.0  # each wait for the run's commands; a change wakes it sooner

ViewOf = Callable[[str], Awaitable[types.CallToolResult]]


class TaskParams(types.RequestParams):
    """The params of tasks/get and tasks/cancel."""

    task_id: str = Field(description="The MCP task's id, as the tool call that created it answered.")


class UpdateTaskParams(TaskParams):
    """The params of tasks/update."""

    input_responses: dict[str, Any] = Field(
        default_factory=dict,
        description="Answers to input the task asked for, by key (loopengt's tasks ask for none, so they are "
        "ignored).",
    )


def negotiated(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client listed the extension (2026-07-28 carries capabilities per request;
    a task result cannot travel on a handshake-era connection)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)


def _owner() -> str | None:
    """The authenticated principal of this request (HTTP with LOOPENGT_TOKEN), else None."""
    return principal()


def _not_found(task_id: str) -> MCPError:
    return MCPError(
        code=types.INVALID_PARAMS,
        message=f"Failed to retrieve task: no task {task_id[:64]!r} (unknown, expired or another client's); "
        "get_run shows the run's state",
    )


class TasksExtension(Extension):
    """The MCP Tasks extension: start_run, step and resume may answer with a task that completes when the
    run's commands settle."""

    identifier = TASKS

    def __init__(self, runs: Runs, view_of: ViewOf, table: TaskTable | None = None) -> None:
        """`view_of(run_id)`: the get_run answer, the final answer of a start_run or resume task."""
        self.runs = runs
        self.view_of = view_of
        self.table = table or TaskTable()
        self._group: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Where the tasks' work runs: the server's lifespan enters this (without it, calls stay plain)."""
        async with anyio.create_task_group() as group:
            previous, self._group = self._group, group
            try:
                yield
            finally:
                self._group = previous
                group.cancel_scope.cancel()

    def methods(self) -> Sequence[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return (
            MethodBinding("tasks/get", TaskParams, self._get, versions),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, versions),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, versions),
        )

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or self._group is None or not negotiated(ctx):
            return await call_next(ctx)
        record = self.table.create(params.name, _owner())
        if record is None:  # full of working tasks: answer as a plain call, which is always allowed
            return await call_next(ctx)
        arguments = params.arguments or {}
        if isinstance(arguments.get("run_id"), str) and params.name != "start_run":
            record.run_id = arguments["run_id"]
        self._group.start_soon(self._work, record, params, ctx, call_next)
        return {"resultType": "task", **record.wire()}

    # --- the work behind a task --------------------------------------------------------------------

    async def _work(
        self,
        record: TaskRecord,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> None:
        IN_TASK.set(True)
        try:
            result = await call_next(ctx)
            run_id = _run_id(result) or record.run_id
            if record.run_id is None and run_id is not None and record.status == "cancelled":
                record.run_id = run_id  # cancelled before its run had an id: stop what the call started
                await self._stop(record, run_id)
                return
            record.run_id = run_id
            failed = isinstance(result, types.CallToolResult) and result.is_error
            if run_id is not None and not failed and not record.done and not await self._settled(run_id):
                record.set("working", "checking: the run's commands are running")
                await self._wait_settled(record, run_id)
                if record.done:
                    return
                # the plain call's answer once its commands are done: a step's submission again (the same
                # submission gets the same, now final, answer and appends nothing), else the run's view
                result = await call_next(ctx) if params.name == "step" else await self.view_of(run_id)
            record.set("completed", _summary(result), result=_dump(result))
        except MCPError as exc:
            record.set(
                "failed", exc.error.message, error=exc.error.model_dump(mode="json", exclude_none=True)
            )
        except Exception:
            log.exception("task %s (%s) failed", record.task_id[:8], params.name)
            record.set(
                "failed",
                f"{params.name} failed with an internal error; get_run shows the run",
                error={"code": types.INTERNAL_ERROR, "message": "Internal error"},
            )

    async def _settled(self, run_id: str) -> bool:
        try:
            return await anyio.to_thread.run_sync(self.runs.settled, run_id)
        except LoopengtError:
            return True  # the run cannot be read: the call's own answer says what happened

    async def _wait_settled(self, record: TaskRecord, run_id: str) -> None:
        seq = await anyio.to_thread.run_sync(self.runs.wait_for_change, run_id, 0, 0.0)
        while not record.done and not await self._settled(run_id):
            seq = await anyio.to_thread.run_sync(
                functools.partial(self.runs.wait_for_change, run_id, seq, SETTLE_POLL_SECONDS),
                abandon_on_cancel=True,
            )

    # --- the methods ---------------------------------------------------------------------------------

    def _lookup(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> TaskRecord:
        require_client_extension(ctx, TASKS)
        record = self.table.get(params.task_id, _owner())
        if record is None:
            raise _not_found(params.task_id)
        return record

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        record = self._lookup(ctx, params)
        if record.status == "working" and record.run_id is not None:
            # say what the task waits on, as progress does: the running gates and their last output
            with contextlib.suppress(LoopengtError):
                view = await anyio.to_thread.run_sync(self.runs.get_run, record.run_id)
                if view.checking and not record.done:
                    record.status_message = progress_text(view, time.time() - record.created)
        return {"resultType": "complete", **record.wire()}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        # No task of ours asks for input, so every response is for a key that is not outstanding: the
        # spec says to ignore those. The task must still exist.
        self._lookup(ctx, params)
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        record = self._lookup(ctx, params)
        if record.done:
            return {"resultType": "complete"}
        if record.run_id is None:  # a start_run still starting: `_work` stops what it started, once known
            record.set("cancelled", "cancelled while the run was starting; get_run shows the run")
        else:
            await self._stop(record, record.run_id)
        return {"resultType": "complete"}

    async def _stop(self, record: TaskRecord, run_id: str) -> None:
        """Stop the run's commands that this server runs (recorded as cancelled by tasks/cancel).

        The task is cancelled first: the call's own answer, which the stop lets through, must not
        complete it."""
        record.set("cancelled", f"cancelled: stopping the commands of run {run_id}")
        try:
            stopped = await anyio.to_thread.run_sync(self.runs.stop_commands, run_id, "tasks/cancel")
        except LoopengtError as exc:
            log.info("tasks/cancel of %s: %s", run_id, exc.message)
            stopped = 0
        record.describe(
            f"cancelled: stopped {stopped} running command(s) of run {run_id}; the run's policy retries or "
            "fails the step (get_run shows which)"
            if stopped
            else f"cancelled: no command of run {run_id} was running in this server; get_run shows the run"
        )


def _run_id(result: HandlerResult) -> str | None:
    if isinstance(result, types.CallToolResult) and isinstance(result.structured_content, dict):
        run_id = result.structured_content.get("run_id")
        return run_id if isinstance(run_id, str) else None
    return None


def _dump(result: HandlerResult) -> dict[str, Any]:
    if isinstance(result, types.Result):
        dumped: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped
    if isinstance(result, dict):
        return dict(result)
    raise TypeError(f"a tool call answered with {type(result).__name__}, not a result")


def _summary(result: HandlerResult) -> str | None:
    if isinstance(result, types.CallToolResult) and result.content:
        first = result.content[0]
        if isinstance(first, types.TextContent):
            return first.text.split("\n", 1)[0][:300]
    return None
