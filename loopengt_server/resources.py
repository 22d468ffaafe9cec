"""MCP resources: runs, their traces and checkpoints, templates and the spec's JSON Schema."""

from __future__ import annotations

import functools
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

from loopengt_core.catalog import template_names, template_text
from loopengt_core.errors import InvalidArgument, LoopengtError, NotFound
from loopengt_core.events import to_record
from loopengt_core.runs import Runs
from loopengt_core.spec import json_schema


async def _read(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
    except (NotFound, InvalidArgument) as exc:  # a malformed id names no resource: invalid params
        raise ResourceNotFoundError(exc.message) from None
    except LoopengtError as exc:
        raise ResourceError(exc.message) from None


def register_resources(mcp: MCPServer, runs: Runs) -> None:
    @mcp.resource("loopengt://runs", mime_type="application/json", description="All runs, newest first")
    async def all_runs() -> dict[str, Any]:
        found = await _read(runs.list_runs, limit=1000)
        return {"runs": [r.model_dump(mode="json") for r in found]}

    @mcp.resource("loopengt://runs/{run_id}", mime_type="application/json", description="A run's RunView")
    async def run(run_id: str) -> dict[str, Any]:
        view = await _read(runs.get_run, run_id)
        return view.model_dump(mode="json")  # type: ignore[no-any-return]

    @mcp.resource(
        "loopengt://runs/{run_id}/trace", mime_type="application/json", description="A run's events"
    )
    async def trace(run_id: str) -> dict[str, Any]:
        events = await _read(runs.trace, run_id)
        return {"run_id": run_id, "events": [to_record(e) for e in events]}

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
            ids = await anyio.to_thread.run_sync(runs.store.list_runs)
        elif argument.name in ("name", "template"):
            ids = template_names()
        else:
            return None
        values = [i for i in ids if i.startswith(prefix)]
        return Completion(values=values[:100], total=len(values), has_more=len(values) > 100)
