"""The nine MCP tools: parse, call the runs service on a worker thread, shape the answer.

Output schemas are written by hand and kept small: the whole tools/list answer is what an agent pays
for in context on every turn (target: 8,000 characters), and what a client validates every answer
against. The RunView's full shape is documented in the README and served as structured content.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from loopengt_core.engine.validation import SpecError, Validation, validation_of
from loopengt_core.engine.view import RunView, StepAnswer
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.limits import MAX_JSON_DEPTH
from loopengt_core.service.async_submit import submit
from loopengt_core.service.catalog import list_templates as catalog_templates
from loopengt_core.service.runs import Runs
from loopengt_server.mcp.approvals import ask_for_approval
from loopengt_server.mcp.callers import caller
from loopengt_server.mcp.notify import Notifier
from loopengt_server.mcp.progress import reporting
from loopengt_server.mcp.sdk import registered_tools, set_output_schema

log = logging.getLogger("loopengt.tools")
T = TypeVar("T")

_S = {"type": "string"}
# The run's shape is described, not typed property by property: clients validate structured content
# against the schema on every call, and the Python SDK's jsonschema spends ~180 µs on a typed RunView
# against ~6 µs on this (bench/mcp_roundtrip.py); the server builds the content from typed models anyway.
_RUN = {
    "type": "object",
    "description": "The run: run_id, loop, status, turn, tasks (open tasks: task_id, step, agent, attempt, "
    "instructions, input, output_schema, feedback), steps (name, status, attempts), final_output, error, "
    "next_action, workspace, parent_run_id, started_at, updated_at, checking (commands still running).",
    "required": ["run_id", "status", "tasks", "next_action"],
}
_STEP = {
    **_RUN,
    "description": f"{_RUN['description'][:-1]}, plus accepted (bool) and gate_results (name, passed, feedback).",
}
OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "start_run": _RUN,
    "get_run": _RUN,
    "resume": _RUN,
    "cancel_run": _RUN,
    "step": _STEP,
    "checkpoint": {
        "type": "object",
        "properties": {"checkpoint_id": _S, "seq": {"type": "integer"}},
        "required": ["checkpoint_id", "seq"],
    },
    "list_runs": {"type": "object", "properties": {"runs": {"type": "array"}}, "required": ["runs"]},
    "validate_spec": {
        "type": "object",
        "properties": {"valid": {"type": "boolean"}, "errors": {"type": "array"}, "summary": _S},
        "required": ["valid", "errors"],
    },
    "list_templates": {
        "type": "object",
        "properties": {"templates": {"type": "array"}},
        "required": ["templates"],
    },
}


def _result(structured: dict[str, Any], text: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def view_text(view: RunView) -> str:
    """The short text for clients that show text: the next action and each open task's instructions."""
    lines = [f"Run {view.run_id}: {view.status}, turn {view.turn}. {view.next_action}"]
    for task in view.tasks:
        lines.append(f"\n[{task.task_id}] {task.instructions}")
        if task.feedback:
            lines.append(f"Feedback: {task.feedback}")
    if isinstance(view, StepAnswer):
        failed = [g for g in view.gate_results if g.passed is False]
        if failed:
            lines.insert(1, "Failed gates: " + ", ".join(g.name for g in failed))
    return "\n".join(lines)


def _view(view: RunView) -> types.CallToolResult:
    return _result(view.model_dump(mode="json"), view_text(view))


async def view_result(runs: Runs, run_id: str) -> types.CallToolResult:
    """get_run's answer (also the final answer of a start_run or resume task: tasks_extension)."""
    return _view(await _call(runs.get_run, run_id))


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service call on a worker thread (it takes locks and fsyncs); turn its errors into tool errors."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
    except LoopengtError as exc:
        raise ToolError(exc.message) from None


async def _reported(
    ctx: Context, runs: Runs, run_id: str | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """`_call`, sending progress about `run_id` meanwhile when the request asked for it."""
    async with reporting(ctx, runs, run_id):
        return await _call(fn, *args, **kwargs)


async def _submit(runs: Runs, run_id: str, task_id: str, output: Any, **options: Any) -> StepAnswer:
    """The service's one async submit (`loopengt_core.service.async_submit.submit`), its errors as tool
    errors: the lock protocol (event loop or worker thread, group commit) is the service's own."""
    try:
        return await submit(runs, run_id, task_id, output, **options)
    except LoopengtError as exc:
        raise ToolError(exc.message) from None


def _guarded(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """The last resort: whatever a tool raises reaches the client as a tool error that says what
    happened, never the SDK's bare "Error executing tool NAME" (an unexpected one is logged with its
    traceback on stderr, and its text, which may hold anyone's data, stays there)."""
    name = fn.__name__

    @functools.wraps(fn)
    async def tool(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except (ToolError, MCPError):
            raise
        except LoopengtError as exc:
            raise ToolError(exc.message) from None
        except RecursionError:
            log.exception("tool %s: recursion", name)
            raise ToolError(
                f"a value sent to {name} is nested too deeply to handle; the limit is "
                f"{MAX_JSON_DEPTH.get()} levels ({MAX_JSON_DEPTH.variable})"
            ) from None
        except MemoryError:
            log.exception("tool %s: out of memory", name)
            raise ToolError(f"{name} ran out of memory on this request: send smaller values") from None
        except Exception as exc:
            log.exception("tool %s failed", name)
            raise ToolError(
                f"{name} failed with an internal error ({type(exc).__name__}); the server logged the details "
                "on stderr. Check the run with get_run before trying again"
            ) from None

    return tool


def register_tools(mcp: MCPServer, runs: Runs, notifier: Notifier) -> None:
    """Register loopengt's MCP tools on `mcp`, each a thin call into `runs` whose errors become tool errors."""

    async def announce(run_id: str) -> None:
        await notifier.changed(run_id)

    def tool(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        return mcp.tool()(_guarded(fn))

    @tool
    async def start_run(
        ctx: Context,
        spec_path: str | None = None,
        template: str | None = None,
        spec: str | dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        run_id: str | None = None,
        context_from: list[str] | None = None,
    ) -> types.CallToolResult:
        """Start a loop run from exactly one of: spec_path (a loop.yaml), template (see list_templates) or spec
        (YAML/JSON). context_from: earlier run ids whose outputs every task gets in input.memory. Returns
        the run: do its open tasks, submit each with step, follow next_action."""
        view = await _reported(  # a new run's id is known beforehand only when given
            ctx,
            runs,
            run_id,
            runs.start_run,
            spec_path=spec_path,
            template=template,
            spec=spec,
            inputs=inputs,
            run_id=run_id,
            context_from=context_from,
        )
        await announce(view.run_id)
        return _view(view)

    @tool
    async def step(
        run_id: str,
        task_id: str,
        ctx: Context,
        output: Any = None,
        outcome: Literal["success", "failure"] = "success",
        error: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> types.CallToolResult:
        """Submit the output of an open task (outcome failure + error if you could not do it). The server runs the
        gates and answers with gate_results and the next tasks (a retry carries feedback). usage: what the work
        used, {input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, model}."""
        async with reporting(ctx, runs, run_id):
            answer = await _submit(
                runs,
                run_id,
                task_id,
                output,
                outcome=outcome,
                error=error,
                usage=usage,
                submitted_by=caller(ctx.request_context),
            )
        await announce(run_id)
        if answer.status == "waiting_approval":
            view = await ask_for_approval(ctx, runs, run_id)
            if view is not None:
                await announce(run_id)
                answer = StepAnswer(**dict(view), accepted=True, gate_results=answer.gate_results)
        return _view(answer)

    @tool
    async def get_run(run_id: str, ctx: Context, wait_seconds: float = 0) -> types.CallToolResult:
        """The run's state: status, open tasks with instructions, steps, next_action. wait_seconds (at most
        LOOPENGT_CALL_WAIT, 20): while checking, answer as soon as the run changes."""
        try:  # a cancelled call leaves its wait behind: it ends at the bound, holding nothing
            async with reporting(ctx, runs, run_id if wait_seconds else None):
                view = await anyio.to_thread.run_sync(
                    functools.partial(runs.get_run, run_id, wait_seconds), abandon_on_cancel=True
                )
        except LoopengtError as exc:
            raise ToolError(exc.message) from None
        return _view(view)

    @tool
    async def resume(
        run_id: str,
        ctx: Context,
        checkpoint_id: str | None = None,
        accept_drift: bool = False,
        worktree: str | None = None,
        budget: dict[str, float] | None = None,
        hint: str | None = None,
    ) -> types.CallToolResult:
        """Continue an interrupted run (accept_drift: true records files changed meanwhile), or with
        checkpoint_id fork a new run from that checkpoint (worktree: a new git worktree for its files, a
        folder name under .loopengt/worktrees). A person's options: budget raises limits {max_tokens,
        max_cost_usd, max_wall_seconds}; hint is feedback to the next attempt."""
        view = await _reported(
            ctx,
            runs,
            run_id,
            runs.resume,
            run_id,
            checkpoint_id,
            accept_drift=accept_drift,
            worktree=worktree,
            budget=budget,
            hint=hint,
        )
        await announce(view.run_id)
        return _view(view)

    @tool
    async def checkpoint(run_id: str, label: str | None = None) -> types.CallToolResult:
        """Save a checkpoint of the run to fork from later with resume."""
        info = await _call(runs.checkpoint, run_id, label)
        await announce(run_id)
        return _result(
            info.model_dump(mode="json"), f"Checkpoint {info.checkpoint_id} of {run_id} at seq {info.seq}."
        )

    @tool
    async def list_runs(status: str | None = None, limit: int = 20) -> types.CallToolResult:
        """Runs in this store, newest first (optionally only one status)."""
        found = await _call(runs.list_runs, status=status, limit=limit)
        text = "\n".join(
            f"{r.run_id} {r.status}: {r.error}"
            if r.error
            else f"{r.run_id} {r.loop} {r.status} turn {r.turn}"
            for r in found
        ) or ("No runs." if status is None else f"No {status} runs.")
        return _result({"runs": [r.model_dump(mode="json") for r in found]}, text)

    @tool
    async def cancel_run(run_id: str, reason: str | None = None) -> types.CallToolResult:
        """Cancel a run; it cannot continue afterwards."""
        view = await _call(runs.cancel_run, run_id, reason)
        await announce(run_id)
        return _view(view)

    @tool
    async def validate_spec(
        spec_path: str | None = None, spec: str | dict[str, Any] | None = None
    ) -> types.CallToolResult:
        """Check a loop spec (a path or YAML/JSON); every problem comes back with its location."""
        result = await anyio.to_thread.run_sync(_validate, runs, spec_path, spec)
        text = (
            result["summary"]
            if result["valid"]
            else "\n".join(f"{e['location']}: {e['message']}" for e in result["errors"])
        )
        return _result(result, text)

    @tool
    async def list_templates() -> types.CallToolResult:
        """Built-in loop templates (name, pattern, description) for start_run(template=...)."""
        # parsed once, on the first call and in a worker thread: the YAML of every template is ~50 ms
        # that no server's start (its first answer) should wait for, and no event loop should run
        templates = await anyio.to_thread.run_sync(catalog_templates)
        text = "\n".join(f"{t.name} ({t.pattern}): {t.description}" for t in templates)
        return _result({"templates": [dataclasses.asdict(t) for t in templates]}, text)

    _compact(mcp)


def _validate(runs: Runs, spec_path: str | None, spec: Any) -> dict[str, Any]:
    if (spec_path is None) == (spec is None):
        raise ToolError("give exactly one of spec_path or spec")
    try:
        source = runs.spec_file_text(spec_path) if spec_path is not None else spec
    except SpecError as exc:  # the file cannot be read
        checked = Validation(valid=False, problems=exc.problems)
    else:  # never quote a file that may not be a spec
        checked = validation_of(source, file_source=spec_path if runs.confine_paths else None)
    errors = [{"location": p.location, "message": p.message} for p in checked.problems]
    return {
        "valid": checked.valid,
        "errors": errors,
        "summary": checked.summary if checked.valid else f"{len(errors)} problem(s)",
    }


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(x) for x in schema]
    return schema


def _compact(mcp: MCPServer) -> None:
    """Hand-written output schemas and title-free input schemas: the tool list stays within budget."""
    for tool in registered_tools(mcp):
        tool.parameters = _strip_titles(tool.parameters)
        tool.description = " ".join(tool.description.split())
        set_output_schema(tool, OUTPUT_SCHEMAS[tool.name])


def tools_list_size(tools: list[types.Tool]) -> int:
    """Characters of the tools/list answer as a client receives it."""
    return len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]))
