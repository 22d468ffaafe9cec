"""The bounds on MCP Tasks held by a server: how many, how long, whose (loopengt_server/mcp/task_table.py)."""

from __future__ import annotations

import time

import pytest

from loopengt_core.model.errors import InvalidArgument
from loopengt_server.mcp.task_table import MAX_TASKS_ENV, TaskTable


def test_ids_are_long_random_and_distinct() -> None:
    table = TaskTable(max_tasks=100)
    ids = set()
    for _ in range(50):
        record = table.create("step", None)
        assert record is not None
        ids.add(record.task_id)
    assert len(ids) == 50
    assert min(len(i) for i in ids) >= 32


def test_a_full_table_drops_the_oldest_finished_task_and_never_a_working_one() -> None:
    table = TaskTable(max_tasks=2)
    first, second = table.create("step", None), table.create("step", None)
    assert first is not None
    assert second is not None
    assert table.create("step", None) is None  # both working: the call answers plainly
    first.set("completed", result={"content": []})
    third = table.create("resume", None)
    assert third is not None
    assert table.get(first.task_id, None) is None
    assert table.get(second.task_id, None) is second
    assert len(table) == 2


def test_a_finished_task_expires_after_its_ttl_and_a_working_one_is_kept() -> None:
    table = TaskTable(max_tasks=10, ttl_seconds=0.05)
    done, working = table.create("step", None), table.create("step", None)
    assert done is not None
    assert working is not None
    done.set("failed", error={"code": -32603, "message": "Internal error"})
    time.sleep(0.1)
    assert table.get(done.task_id, None) is None
    assert table.get(working.task_id, None) is working
    assert working.wire()["ttlMs"] >= 100  # it ran past its first ttl: the ttl said grows with it


def test_a_task_is_found_only_by_its_owner() -> None:
    table = TaskTable(max_tasks=10)
    record = table.create("step", "token-1")
    assert record is not None
    assert table.get(record.task_id, "token-1") is record
    assert table.get(record.task_id, "token-2") is None
    assert table.get(record.task_id, None) is None


def test_the_wire_form_follows_the_status() -> None:
    record = TaskTable(max_tasks=10).create("step", None)
    assert record is not None
    working = record.wire()
    assert working["status"] == "working"
    assert working["pollIntervalMs"] > 0
    assert working["createdAt"].endswith("Z")
    assert "result" not in working
    record.set("completed", "done", result={"content": [], "isError": False})
    record.set("cancelled", "too late")  # a finished task never changes again
    completed = record.wire()
    assert completed["status"] == "completed"
    assert completed["result"] == {"content": [], "isError": False}
    assert completed["statusMessage"] == "done"
    assert "pollIntervalMs" not in completed


def test_a_bad_limit_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_TASKS_ENV, "lots")
    with pytest.raises(InvalidArgument, match=MAX_TASKS_ENV):
        TaskTable()
