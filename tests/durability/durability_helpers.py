"""Shared by the durability suites: servers we can kill, calls that notice a dead server, trace invariants.

The suites are not part of `python -m pytest` (their files do not match `test_*.py`); `.ci/durability.sh`
runs them by name. `mcp_helpers` (in tests/) is importable because tests/conftest.py puts tests/ on sys.path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_helpers import LOOPENGT, server_env, text_of

CALL_TIMEOUT_SECONDS = 60.0


class ServerGone(Exception):
    """The server answering this client is dead (killed, or crashed at a fault point)."""


def seed_from_env(name: str = "LOOPENGT_DURABILITY_SEED") -> int:
    """The RNG seed: $LOOPENGT_DURABILITY_SEED if set (to replay a failure), else a fresh one."""
    raw = os.environ.get(name)
    return int(raw) if raw else int.from_bytes(os.urandom(4), "big")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by the SDK) counts as dead
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- a stdio server whose pid we know -------------------------------------------------------------------


def killable_stdio_client(
    store: Path | str, cwd: Path, pidfile: Path, log: Path, *, env: dict[str, str], mode: str = "legacy"
) -> Client:
    """`python -m loopengt_server serve --store STORE` on stdio, reached through the real `mcp` client.

    A shell writes its pid to `pidfile` and execs the server (the pid stays the same), with stderr appended
    to `log` so a traceback of an unexpected death can be found and named.
    """
    script = 'echo $$ > "$1"; exec "$2" -m loopengt_server serve --store "$3" 2>>"$4"'
    params = StdioServerParameters(
        command="/bin/sh",
        args=["-c", script, "sh", str(pidfile), sys.executable, str(store), str(log)],
        cwd=str(cwd),
        env=server_env(**env),
    )
    return Client(params, mode=mode, read_timeout_seconds=CALL_TIMEOUT_SECONDS)


async def read_pid(pidfile: Path) -> int:
    """The pid the wrapper wrote (it is there before the server can answer, so this rarely waits)."""
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError, ValueError):
            text = pidfile.read_text().strip()
            if text:
                return int(text)
        if time.monotonic() > deadline:
            raise RuntimeError(f"no pid in {pidfile}")
        await anyio.sleep(0.01)


@contextlib.contextmanager
def _server_gone_on_loss(pid: int | None) -> Iterator[None]:
    """Turn a dead connection (any transport, surfaced in many shapes) into ServerGone."""
    try:
        yield
    except MCPError as exc:
        if exc.error.code == types.CONNECTION_CLOSED or (pid is not None and not pid_alive(pid)):
            raise ServerGone(str(exc)) from exc
        raise
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        raise ServerGone(repr(exc)) from exc
    except Exception as exc:  # HTTP transports: connection refused / reset
        if _looks_like_connection_loss(exc):
            raise ServerGone(repr(exc)) from exc
        raise


async def call(client: Client, tool: str, arguments: dict[str, Any], *, pid: int | None = None) -> Any:
    """A tool call; ServerGone if the connection died under it (any transport)."""
    with _server_gone_on_loss(pid):
        return await client.call_tool(tool, arguments)


def _looks_like_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_looks_like_connection_loss(e) for e in exc.exceptions)
    name = type(exc).__name__
    markers = ("Connect", "RemoteProtocol", "ReadError", "WriteError", "Closed", "Broken", "EndOfStream")
    if any(m in name for m in markers):
        return True
    return isinstance(exc, ConnectionError | MCPError) and "closed" in str(exc).lower()


async def read_trace(client: Client, run_id: str, *, pid: int | None = None) -> list[dict[str, Any]]:
    with _server_gone_on_loss(pid):
        result = await client.read_resource(f"loopengt://runs/{run_id}/trace", cache_mode="bypass")
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents), content
    body = json.loads(content.text)
    assert body["run_id"] == run_id
    return list(body["events"])


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


# --- `loopengt check` in its own process ----------------------------------------------------------------


def start_check(store: Path | str) -> subprocess.Popen[str]:
    """`loopengt check --store STORE` as a person would run it (a new process, no caches)."""
    return subprocess.Popen(
        [str(LOOPENGT), "check", "--store", str(store)],
        env={**os.environ, **server_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def finish_check(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return -1, "loopengt check timed out"
        await anyio.sleep(0.02)
    out = proc.stdout.read() if proc.stdout else ""
    return proc.returncode, out


def check_now(store: Path | str) -> tuple[int, str]:
    done = subprocess.run(
        [str(LOOPENGT), "check", "--store", str(store)],
        env={**os.environ, **server_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


# --- invariants of one run's trace ----------------------------------------------------------------------


@dataclass
class TraceReport:
    """What is wrong with a trace: extra output_submitted events (`doubled`) and other broken invariants."""

    doubled: int = 0
    problems: list[str] = field(default_factory=list)
    doubled_tasks: dict[str, int] = field(default_factory=dict)  # task_id -> extra output_submitted events


def check_trace(run_id: str, events: list[dict[str, Any]]) -> TraceReport:
    """Invariants every trace must hold, whatever crashed when.

    seqs are 1..N without a gap; one run_started; each task issued once and submitted at most once; each
    command finished at most once; no event of a run after its end.
    """
    report = TraceReport()
    seqs = [e["seq"] for e in events]
    if seqs != list(range(1, len(events) + 1)):
        report.problems.append(f"{run_id}: seqs are not 1..{len(events)}: {_gaps(seqs)}")
    types_ = Counter(e["type"] for e in events)
    if types_["run_started"] + types_["run_forked"] != 1:
        report.problems.append(f"{run_id}: {types_['run_started']} run_started events")
    submitted = Counter(e["data"].get("task_id") for e in events if e["type"] == "output_submitted")
    for task_id, count in submitted.items():
        if count > 1:
            report.doubled += count - 1
            report.doubled_tasks[str(task_id)] = count - 1
            report.problems.append(f"{run_id}: task {task_id} has {count} output_submitted events")
    issued = Counter(e["data"].get("task_id") for e in events if e["type"] == "task_issued")
    for task_id, count in issued.items():
        if count > 1:
            report.problems.append(f"{run_id}: task {task_id} issued {count} times")
    finished = Counter(e["data"].get("command_id") for e in events if e["type"] == "command_finished")
    for command_id, count in finished.items():
        if count > 1:
            report.problems.append(f"{run_id}: command {command_id} finished {count} times")
    ends = [i for i, e in enumerate(events) if e["type"] in ("run_completed", "run_failed", "run_cancelled")]
    if len(ends) > 1 or (ends and ends[0] != len(events) - 1):
        report.problems.append(f"{run_id}: events after the run ended (end events at {ends})")
    return report


def _gaps(seqs: Iterable[int]) -> str:
    seqs = list(seqs)
    return f"first {seqs[:5]}, last {seqs[-5:]}, {len(seqs)} events"


def submissions(events: list[dict[str, Any]], task_id: str) -> list[Any]:
    """The outputs recorded for a task (as many as there are output_submitted events for it)."""
    return [
        e["data"].get("output")
        for e in events
        if e["type"] == "output_submitted" and e["data"].get("task_id") == task_id
    ]


def command_counts(events: list[dict[str, Any]], kind: str) -> tuple[int, int]:
    """(claims, recorded results) of the run's commands of `kind` (step or gate)."""
    kinds = {e["data"]["command_id"]: e["data"]["kind"] for e in events if e["type"] == "command_requested"}
    started = sum(
        1 for e in events if e["type"] == "command_started" and kinds.get(e["data"]["command_id"]) == kind
    )
    finished = sum(
        1 for e in events if e["type"] == "command_finished" and kinds.get(e["data"]["command_id"]) == kind
    )
    return started, finished


def lines_in(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def open_lease(events: list[dict[str, Any]]) -> datetime | None:
    """The latest lease of a claimed command that has no recorded result yet (None if there is none)."""
    leases: dict[str, str] = {}
    for e in events:
        if e["type"] == "command_started":
            leases[e["data"]["command_id"]] = e["data"]["lease_until"]
        elif e["type"] == "command_finished":
            leases.pop(e["data"]["command_id"], None)
    if not leases:
        return None
    return max(datetime.fromisoformat(v.replace("Z", "+00:00")) for v in leases.values())
