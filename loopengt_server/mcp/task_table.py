"""The MCP Tasks this server holds: unguessable ids, a bounded number, a bounded time.

A task is a handle on one tool call that answers later (`loopengt_server.mcp.tasks_extension`). The call's
work is the run's, and the run is durable in the store; the task itself is only the wire handle, kept
in memory: a restarted server answers `tasks/get` for an old id with "not found", and the agent reads
the run with get_run, which shows the same answer.

Bounds: at most MAX_TASKS tasks (LOOPENGT_MAX_TASKS, default 1000); a finished task is kept TTL
seconds after it was created or, if it ran longer, after it finished (LOOPENGT_TASK_TTL_SECONDS,
default 3600). When the table is full the oldest finished task goes first; when every task is still
working, no new task is made and the call answers as a plain call does.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from loopengt_core.model.bounded import env_count

TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
MAX_TASKS_ENV = "LOOPENGT_MAX_TASKS"
TTL_ENV = "LOOPENGT_TASK_TTL_SECONDS"
POLL_INTERVAL_MS = 2000
ID_BYTES = 24  # 192 random bits: a task id is a bearer handle on the call's answer


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TaskRecord:
    """One task. `owner`: the authenticated principal that made it (None without auth); only it may
    read or cancel the task."""

    task_id: str
    tool: str
    owner: str | None
    ttl_seconds: float
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    status: TaskStatus = "working"
    status_message: str | None = None
    run_id: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Whether the task has finished (completed, failed or cancelled)."""
        return self.status in TERMINAL

    def expires(self) -> float:
        """When the task may be dropped: TTL after creation, or after it finished if it ran longer."""
        return max(self.created, self.updated if self.done else time.time()) + self.ttl_seconds

    def set(self, status: TaskStatus, message: str | None = None, **payload: Any) -> None:
        """Move to `status`; a finished task never changes again (a late result after a cancel is dropped)."""
        if self.done:
            return
        self.status = status
        self.status_message = message
        self.result = payload.get("result")
        self.error = payload.get("error")
        self.updated = time.time()

    def describe(self, message: str) -> None:
        """Say more about the status, which stays as it is."""
        self.status_message = message
        self.updated = time.time()

    def wire(self) -> dict[str, Any]:
        """The task as `tasks/get` and `CreateTaskResult` carry it (a DetailedTask, camelCase)."""
        body: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created),
            "lastUpdatedAt": _iso(self.updated),
            "ttlMs": int((self.expires() - self.created) * 1000),
        }
        if not self.done:
            body["pollIntervalMs"] = POLL_INTERVAL_MS
        if self.status_message:
            body["statusMessage"] = self.status_message
        if self.status == "completed" and self.result is not None:
            body["result"] = self.result
        if self.status == "failed" and self.error is not None:
            body["error"] = self.error
        return body


class TaskTable:
    """The MCP tasks this server holds, bounded in number and time (see the module docstring)."""

    def __init__(self, *, max_tasks: int | None = None, ttl_seconds: float | None = None) -> None:
        self.max_tasks = max_tasks or env_count(MAX_TASKS_ENV, 1000)
        self.ttl_seconds = float(ttl_seconds or env_count(TTL_ENV, 3600))
        self._tasks: OrderedDict[str, TaskRecord] = OrderedDict()

    def create(self, tool: str, owner: str | None) -> TaskRecord | None:
        """A new working task, or None when the table is full of working tasks."""
        self.purge()
        if len(self._tasks) >= self.max_tasks:
            oldest_done = next((t for t in self._tasks.values() if t.done), None)
            if oldest_done is None:
                return None
            del self._tasks[oldest_done.task_id]
        record = TaskRecord(secrets.token_urlsafe(ID_BYTES), tool, owner, self.ttl_seconds)
        self._tasks[record.task_id] = record
        return record

    def get(self, task_id: str, owner: str | None) -> TaskRecord | None:
        """The task, if it exists, has not expired, and belongs to `owner` (else None, alike: a caller
        learns nothing about other principals' tasks)."""
        self.purge()
        record = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if record is None or record.owner != owner:
            return None
        return record

    def purge(self) -> None:
        """Drop the finished tasks whose time to live has passed."""
        now = time.time()
        for task_id in [t.task_id for t in self._tasks.values() if t.done and t.expires() <= now]:
            del self._tasks[task_id]

    def __len__(self) -> int:
        return len(self._tasks)
