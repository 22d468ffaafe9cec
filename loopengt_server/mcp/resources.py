"""MCP resources: runs, their traces and checkpoints, templates and the spec's JSON Schema."""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound
from loopengt_core.model.events import to_record
from loopengt_core.model.spec import json_schema
from loopengt_core.service.catalog import template_names, template_text
from loopengt_core.service.runs import Runs
from loopengt_server.mcp.run_context import store_context

TRACE_PAGE_EVENTS = 200
TRACE_PAGE_BYTES = 1 << 20  # a page ends after the event that reaches this much JSON (outputs can be MBs)
_TRACE_READ = 20  # events read from the store at a time, so a page of large outputs is never all in memory


def trace_page(runs: Runs, run_id: str, cursor: str | None) -> dict[str, Any]:
    """One page of the trace: the events after `cursor` (a seq; none: from the start), at most
    TRACE_PAGE_EVENTS of them and about TRACE_PAGE_BYTES of JSON, and the cursor of the next page
    (null at the end of the log as it is now). Its cost follows the page, not the run's length."""
    after = 0
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
            raise InvalidArgument(
                f"cursor {cursor[:40]!r} is not a trace cursor: use the next_cursor of the page before "
                "(a number: the seq the next page starts after)"
            )
        after = int(cursor)
    events: list[dict[str, Any]] = []
    size = 0
    while len(events) < TRACE_PAGE_EVENTS and size < TRACE_PAGE_BYTES:
        batch = runs.trace(run_id, after=after, limit=min(_TRACE_READ, TRACE_PAGE_EVENTS - len(events)))
        if not batch:
            break
        for event in batch:
            dumped = to_record(event)
            events.append(dumped)
            size += len(json.dumps(dumped, ensure_ascii=False))
            after = event.seq
            if size >= TRACE_PAGE_BYTES:
                break
    more = bool(runs.trace(run_id, after=after, limit=1))
    return {"run_id": run_id, "events": events, "next_cursor": str(after) if more else None}


async def _read(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
    except (NotFound, InvalidArgument) as exc:  # a malformed id names no resource: invalid params
        raise ResourceNotFoundError(exc.message) from None
    except LoopengtError as exc:
        raise ResourceError(exc.message) from None


def register_resources(mcp: MCPServer, runs: Runs) -> None:
    """Serve the runs as MCP resources: the run list, each run's view, trace and checkpoints."""

    @mcp.resource("loopengt://runs", mime_type="application/json", description="All runs, newest first")
    async def all_runs() -> dict[str, Any]:
        found = await _read(runs.list_runs, limit=1000)
        return {"runs": [r.model_dump(mode="json") for r in found]}

    @mcp.resource("loopengt://runs/{run_id}", mime_type="application/json", description="A run's RunView")
    async def run(run_id: str) -> dict[str, Any]:
        view = await _read(runs.get_run, run_id)
        return view.model_dump(mode="json")  # type: ignore[no-any-return]

    @mcp.resource(
        "loopengt://runs/{run_id}/context",
        mime_type="text/plain",
        description="Where a run stands, in at most 2,000 characters (what the session hook gives an agent)",
    )
    async def context(run_id: str) -> str:
        return await _read(store_context, runs.reader, run_id)  # type: ignore[no-any-return]

    @mcp.resource(
        "loopengt://runs/{run_id}/trace{?cursor}",
        mime_type="application/json",
        description="A run's events, a page at a time: read next_cursor's page with ?cursor=N until it is null",
    )
    async def trace(run_id: str, cursor: str | None = None) -> dict[str, Any]:
        return await _read(trace_page, runs, run_id, cursor)  # type: ignore[no-any-return]

    @mcp.resource(
        "loopengt://runs/{run_id}/checkpoints",
        mime_type="application/json",
        description="A run's checkpoints",
    )
    async def checkpoints(run_id: str) -> dict[str, Any]:
        found = await _read(runs.list_checkpoints, run_id)
        return {"run_id": run_id, "checkpoints": [c.model_dump(mode="json") for c in found]}

    @mcp.resource(
        "loopengt://templates/{name}", mime_type="application/yaml", description="A built-in loop template"
    )
    async def template(name: str) -> str:
        return await _read(template_text, name)  # type: ignore[no-any-return]

    @mcp.resource(
        "loopengt://schema/loop-spec",
        mime_type="application/json",
        description="JSON Schema of loop.yaml, for writing specs",
    )
    async def schema() -> dict[str, Any]:
        return json_schema()

    @mcp.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # untyped in mcp 2.3
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        prefix = argument.value or ""
        if argument.name == "run_id":
            ids = await anyio.to_thread.run_sync(runs.reader.list_runs)
        elif argument.name in ("name", "template"):
            ids = template_names()
        else:
            return None
        values = [i for i in ids if i.startswith(prefix)]
        return Completion(values=values[:100], total=len(values), has_more=len(values) > 100)
