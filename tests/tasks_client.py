"""A requester for the MCP Tasks extension (SEP-2663, 2026-07-28) on the real `mcp` client.

The SDK client has the extension surface (`ClientExtension`, `ResultClaim`) but no Tasks requester:
this is one, to the specification. `TasksClient()` in `Client(extensions=[...])` advertises the
extension on every request and finishes a `resultType: "task"` answer by polling `tasks/get`;
`create_task`, `get_task`, `cancel_task` and `update_task` speak the methods directly.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict, Field

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class TaskState(types.Result):
    """The Task fields both the handle and tasks/get carry."""

    model_config = ConfigDict(extra="allow")
    result_type: str
    task_id: str
    status: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    status_message: str | None = None


class CreateTaskResult(TaskState):
    result_type: Literal["task"]


class DetailedTask(TaskState):
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Ack(types.Result):
    model_config = ConfigDict(extra="allow")
    result_type: str


class TaskIdParams(types.RequestParams):
    task_id: str


class UpdateParams(TaskIdParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"  # the spec's Mcp-Name header on HTTP


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param = "taskId"


async def get_task(session: ClientSession, task_id: str) -> DetailedTask:
    return await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), DetailedTask)


async def cancel_task(session: ClientSession, task_id: str) -> Ack:
    return await session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)), Ack)


async def update_task(session: ClientSession, task_id: str, responses: dict[str, Any]) -> Ack:
    params = UpdateParams(task_id=task_id, input_responses=responses)
    return await session.send_request(UpdateTask(params=params), Ack)


async def wait_task(session: ClientSession, task_id: str, *, deadline_seconds: float = 60) -> DetailedTask:
    """Poll tasks/get (at the server's pollIntervalMs) until the task is terminal."""
    end = time.monotonic() + deadline_seconds
    while True:
        task = await get_task(session, task_id)
        if task.status in TERMINAL:
            return task
        assert time.monotonic() < end, f"task {task_id} still {task.status}: {task.status_message}"
        await anyio.sleep(min((task.poll_interval_ms or 1000) / 1000, 0.5))


async def create_task(client: Client, name: str, arguments: dict[str, Any]) -> CreateTaskResult:
    """tools/call with the extension advertised; the task handle itself (fails if a plain result came)."""
    result = await client.session.call_tool(name, arguments, allow_claimed=True)
    assert isinstance(result, CreateTaskResult), f"expected a task handle, got {result}"
    return result


class TasksClient(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=self._resolve)]

    async def _resolve(self, created: CreateTaskResult, ctx: ClaimContext) -> types.CallToolResult:
        task = await wait_task(ctx.session, created.task_id)
        if task.status == "completed":
            assert task.result is not None
            return types.CallToolResult.model_validate(task.result)
        if task.status == "failed":
            error = task.error or {}
            raise MCPError(code=error.get("code", types.INTERNAL_ERROR), message=error.get("message", ""))
        raise RuntimeError(f"task {created.task_id} was cancelled: {task.status_message}")
