"""Progress notifications while a tool call waits on the run's commands.

When the request carries a `progressToken`, every PROGRESS_SECONDS (at most 5) the call sends
`notifications/progress` saying how long it has waited, which gate or command step is running and
the last line of its output (the RunView's `checking`, which every process can read). Clients that
reset their tool timeout on progress keep the call alive; others at least show what is going on.
Nothing is sent without a token, nor from a task's background work (its request has answered; the
Tasks extension does not carry progress).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context

from loopengt_core.engine.view import RunView
from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs

PROGRESS_SECONDS = 4.0
IN_TASK: contextvars.ContextVar[bool] = contextvars.ContextVar("loopengt_in_task", default=False)
"""True inside a task's background work (tasks_extension): its request has answered, so it sends no
progress."""


def has_progress_token(ctx: Context) -> bool:
    """Whether the request asked for progress notifications (it carries a progress token)."""
    meta: Any = ctx.request_context.meta
    if not isinstance(meta, dict):
        return False
    return meta.get("progress_token", meta.get("progressToken")) is not None


def progress_text(view: RunView, waited_seconds: float) -> str:
    """`12 s: gate 'tests' of step 'fix' running (last output: 3 passed)`, one clause per command."""
    parts = []
    for check in view.checking:
        what = f"{check.kind} '{check.name}'" + (f" of step '{check.step}'" if check.kind == "gate" else "")
        last = f" (last output: {check.last_output[:200]})" if check.last_output else ""
        parts.append(f"{what} {check.status}{last}")
    return f"{waited_seconds:.0f} s: " + ("; ".join(parts) or f"run {view.run_id} is {view.status}")


@asynccontextmanager
async def reporting(ctx: Context, runs: Runs, run_id: str | None) -> AsyncIterator[None]:
    """Send progress about `run_id` while the body runs (when a token was given)."""
    if run_id is None or IN_TASK.get() or not has_progress_token(ctx):
        yield
        return
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(_tick, ctx, runs, run_id, started)
        try:
            yield
        finally:
            group.cancel_scope.cancel()


async def _tick(ctx: Context, runs: Runs, run_id: str, started: float) -> None:
    sent = 0
    while True:
        await anyio.sleep(PROGRESS_SECONDS)
        try:
            view = await anyio.to_thread.run_sync(runs.get_run, run_id)
            message = progress_text(view, time.monotonic() - started)
        except LoopengtError as exc:
            message = f"{time.monotonic() - started:.0f} s: {exc.message}"
        sent += 1
        await ctx.report_progress(sent, None, message)
