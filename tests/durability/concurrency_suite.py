"""Concurrency suite: many clients submitting to the same runs at once, on one server and on two servers
sharing one file store. Run explicitly (it is not collected by `python -m pytest`):

    python -m pytest tests/durability/concurrency_suite.py -q -s

Every run is a parallel_fan_out of 8 branches (max_concurrency 8) and a join. Each branch task gets three
submissions at once from three different clients: its owner's output, the same output again (a duplicate)
and a rival's different output. Then all 8 clients submit the join at once (6 the same output, 2 another).
Several runs race at the same time. Whatever order the server sees them in, exactly one output per task
is recorded, every client whose output is the recorded one gets `accepted` with the same gate results (the
idempotent answer), every other client gets a clear tool error, nobody gets a crash (a JSON-RPC error or a
tool error without a message), the trace's seqs have no gap, every run completes and `loopengt check`
passes.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from durability_helpers import check_now, check_trace, read_trace, seed_from_env, structured, submissions
from mcp import Client
from mcp_helpers import HttpServer, assert_no_traceback, running, text_of

from loopengt_core.model.errors import LoopengtError, StoreConflict
from loopengt_core.model.events import CheckpointTaken, event_data, to_record
from loopengt_core.service.logs import configure as configure_logging
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

pytestmark = pytest.mark.anyio

SEED = seed_from_env()
BRANCHES = [f"b{i}" for i in range(1, 9)]
JOIN = "merge"
RUNS_AT_ONCE = 6


def fan_out_spec() -> str:
    lines = [
        "name: race",
        "goal: Eight branches submitted at once by racing clients",
        "pattern: parallel_fan_out",
        "agents:",
        "  - name: worker",
        "  - name: lead",
        "steps:",
    ]
    for branch in BRANCHES:
        lines += [
            f"  - name: {branch}",
            "    agent: worker",
            "    output_schema: {type: object, required: [summary], properties: {summary: {type: string}}}",
        ]
    lines += [
        f"  - name: {JOIN}",
        "    agent: lead",
        f"    dependencies: [{', '.join(BRANCHES)}]",
        "policy:",
        "  max_concurrency: 8",
        "  max_turns: 100",
    ]
    return "\n".join(lines) + "\n"


SPEC = fan_out_spec()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Attempt:
    client: int
    run_id: str
    task_id: str
    output: dict[str, Any]
    result: types.CallToolResult | None = None
    crash: str | None = None  # a JSON-RPC error or a transport failure: never acceptable here


@dataclass
class Report:
    lost: int = 0
    doubled: int = 0
    accepted: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        self.lost += other.lost
        self.doubled += other.doubled
        self.accepted += other.accepted
        self.refused += other.refused
        self.problems += other.problems


def attempts_for(run_id: str, task_ids: Sequence[str], clients: int) -> list[Attempt]:
    """Each task: its owner's output, the same output from the next client, a rival output from the one after."""
    own = {t: {"summary": f"{run_id} {t} by its owner"} for t in task_ids}
    rival = {t: {"summary": f"{run_id} {t} by a rival"} for t in task_ids}
    out = []
    for i in range(len(task_ids)):
        task = task_ids[i]
        out.append(Attempt(i % clients, run_id, task, own[task]))
        out.append(Attempt((i + 1) % clients, run_id, task, own[task]))
        out.append(Attempt((i + 2) % clients, run_id, task, rival[task]))
    return out


def join_attempts(run_id: str, task_id: str, clients: int) -> list[Attempt]:
    same = {"summary": f"{run_id} joined"}
    other = {"summary": f"{run_id} joined differently"}
    return [Attempt(i, run_id, task_id, same if i < clients - 2 else other) for i in range(clients)]


async def fire(clients: Sequence[Client], attempts: list[Attempt], rng: random.Random) -> None:
    """Send every attempt at once (in a shuffled order), each from its client's own MCP session."""
    order = list(attempts)
    rng.shuffle(order)

    async def send(attempt: Attempt) -> None:
        args = {"run_id": attempt.run_id, "task_id": attempt.task_id, "output": attempt.output}
        try:
            attempt.result = await clients[attempt.client].call_tool("step", args)
        except Exception as exc:
            attempt.crash = repr(exc)

    async with anyio.create_task_group() as group:
        for attempt in order:
            group.start_soon(send, attempt)


def judge(attempts: list[Attempt], events: list[dict[str, Any]], report: Report) -> None:
    """Exactly one output recorded per task; its senders accepted alike, every other sender refused clearly."""
    by_task: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_task.setdefault(attempt.task_id, []).append(attempt)
    for task_id, group in by_task.items():
        recorded = submissions(events, task_id)
        run_id = group[0].run_id
        if not recorded:
            report.lost += 1
            report.problems.append(f"{run_id}: nothing recorded for {task_id}")
            continue
        if len(recorded) > 1:  # counted in `doubled` by check_trace
            report.problems.append(f"{run_id}: {task_id} recorded {len(recorded)} times")
        winner = recorded[0]
        gate_results = []
        for attempt in group:
            if attempt.crash is not None:
                report.problems.append(
                    f"{run_id}: {task_id} from client {attempt.client} crashed: {attempt.crash}"
                )
                continue
            assert attempt.result is not None
            text = text_of(attempt.result)
            if attempt.output == winner:
                if attempt.result.is_error:
                    report.problems.append(f"{run_id}: {task_id}, the recorded output, was refused: {text}")
                    continue
                answer = structured(attempt.result)
                if answer.get("accepted") is not True or answer.get("run_id") != run_id:
                    report.problems.append(f"{run_id}: {task_id} answered {answer}")
                gate_results.append(answer["gate_results"])
                report.accepted += 1
            else:
                if not attempt.result.is_error:
                    report.problems.append(
                        f"{run_id}: {task_id} accepted {attempt.output} although {winner} was recorded"
                    )
                    continue
                report.refused += 1
                if task_id not in text or "different output" not in text:
                    report.problems.append(f"{run_id}: {task_id}: unclear refusal: {text!r}")
                try:
                    assert_no_traceback(text)
                except AssertionError as exc:
                    report.problems.append(str(exc))
        if any(g != gate_results[0] for g in gate_results):
            report.problems.append(f"{run_id}: {task_id}: accepted answers disagree: {gate_results}")


async def race(
    clients: Sequence[Client], starters: Sequence[Client], prefix: str, rng: random.Random
) -> Report:
    """RUNS_AT_ONCE runs, each started by one of `starters`, all their branches and joins raced at once."""
    report = Report()
    run_ids = [f"{prefix}-{n}" for n in range(RUNS_AT_ONCE)]
    views: dict[str, dict[str, Any]] = {}

    async def start(n: int, run_id: str) -> None:
        starter = starters[n % len(starters)]
        views[run_id] = structured(await starter.call_tool("start_run", {"spec": SPEC, "run_id": run_id}))

    async with anyio.create_task_group() as group:
        for n, run_id in enumerate(run_ids):
            group.start_soon(start, n, run_id)
    branch_attempts: list[Attempt] = []
    for run_id in run_ids:
        task_ids = [t["task_id"] for t in views[run_id]["tasks"]]
        assert sorted(task_ids) == sorted(f"{b}#1" for b in BRANCHES), views[run_id]
        branch_attempts += attempts_for(run_id, task_ids, len(clients))
    await fire(clients, branch_attempts, rng)
    join: list[Attempt] = []
    for run_id in run_ids:
        view = structured(await clients[0].call_tool("get_run", {"run_id": run_id}))
        if [t["task_id"] for t in view["tasks"]] != [f"{JOIN}#1"]:
            report.problems.append(f"{run_id}: after the branches the open tasks are {view['tasks']}")
            continue
        join += join_attempts(run_id, f"{JOIN}#1", len(clients))
    await fire(clients, join, rng)
    for run_id in run_ids:
        events = await read_trace(clients[-1], run_id)
        trace = check_trace(run_id, events)
        report.doubled += trace.doubled
        report.problems += trace.problems
        judge([a for a in branch_attempts + join if a.run_id == run_id], events, report)
        view = structured(await clients[-1].call_tool("get_run", {"run_id": run_id}))
        if view["status"] != "completed":
            report.problems.append(f"{run_id} is {view['status']}, not completed")
        completed = [e["data"].get("step") for e in events if e["type"] == "step_completed"]
        if sorted(completed) != sorted([*BRANCHES, JOIN]):
            report.problems.append(f"{run_id}: steps completed {completed}")
    return report


def verdict(name: str, report: Report, store: Path, seconds: float) -> None:
    code, out = check_now(store)
    print(
        f"\n[{name}] accepted {report.accepted}, refused {report.refused}, lost {report.lost}, "
        f"doubled {report.doubled}, loopengt check exit {code}, {seconds:.1f} s (seed {SEED})"
    )
    assert report.problems == [], "\n".join(report.problems)
    assert (report.lost, report.doubled) == (0, 0)
    assert code == 0, out


async def connect_all(urls: Sequence[str], count: int, stack: Any) -> list[Client]:
    """`count` client sessions spread over `urls`, alternating the two protocol eras."""
    clients = []
    for i in range(count):
        mode = "legacy" if i % 2 else "auto"
        clients.append(
            await stack.enter_async_context(Client(urls[i % len(urls)], mode=mode, read_timeout_seconds=60))
        )
    return clients


@pytest.mark.timeout(300)
async def test_eight_clients_race_on_one_server(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(f"{SEED}-one")
    server = HttpServer("streamable-http", tmp_path / "store", tmp_path, env={"LOOPENGT_SNAPSHOT_EVERY": "7"})
    with running(server):
        async with contextlib.AsyncExitStack() as stack:
            clients = await connect_all([server.url], 8, stack)
            report = Report()
            for wave in range(3):
                report.add(await race(clients, clients, f"one-{wave}", rng))
    verdict("one server, 8 clients", report, tmp_path / "store", time.monotonic() - started)


@pytest.mark.timeout(300)
async def test_two_server_processes_on_one_file_store(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(f"{SEED}-two")
    store = tmp_path / "store"
    env = {"LOOPENGT_SNAPSHOT_EVERY": "5"}
    servers = [HttpServer("streamable-http", store, tmp_path, env=env) for _ in range(2)]
    with running(*servers):
        async with contextlib.AsyncExitStack() as stack:
            clients = await connect_all([s.url for s in servers], 8, stack)
            report = Report()
            for wave in range(3):
                report.add(await race(clients, clients, f"two-{wave}", rng))
            for server in servers:
                assert server.proc is not None
                assert server.proc.poll() is None, server.log()
    verdict("two servers, one file store, 8 clients", report, store, time.monotonic() - started)


def hammer(runs: Runs, attempts: list[Attempt], threads: int) -> None:
    """Each client's attempts on its own thread, all released at once by a barrier; results onto the attempts."""
    barrier = threading.Barrier(threads)

    def worker(mine: list[Attempt]) -> None:
        barrier.wait()
        for attempt in mine:
            try:
                answer = runs.step(attempt.run_id, attempt.task_id, attempt.output)
            except LoopengtError as exc:  # what the MCP layer turns into a tool error
                attempt.result = types.CallToolResult(
                    content=[types.TextContent(type="text", text=exc.message)], is_error=True
                )
            except Exception as exc:
                attempt.crash = repr(exc)
            else:
                attempt.result = types.CallToolResult(
                    content=[], structured_content=answer.model_dump(mode="json"), is_error=False
                )

    workers = [
        threading.Thread(target=worker, args=([a for a in attempts if a.client == i],))
        for i in range(threads)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)


@pytest.mark.timeout(300)
def test_eight_threads_on_one_runs_service(tmp_path: Path) -> None:
    """The same races without MCP in between: 8 threads calling one `Runs`, released by one barrier."""
    configure_logging("WARNING")  # the service logs every run it starts; keep -s output to the reports
    started = time.monotonic()
    rng = random.Random(f"{SEED}-threads")
    store = tmp_path / "store"
    runs = Runs(FileStore(store, snapshot_every=3), cwd=tmp_path)
    report = Report()
    for wave in range(10):
        run_ids = [f"threads-{wave}-{n}" for n in range(RUNS_AT_ONCE)]
        attempts: list[Attempt] = []
        for run_id in run_ids:
            view = runs.start_run(spec=SPEC, run_id=run_id)
            attempts += attempts_for(run_id, [t.task_id for t in view.tasks], 8)
        rng.shuffle(attempts)
        hammer(runs, attempts, 8)
        joins: list[Attempt] = []
        for run_id in run_ids:
            joins += join_attempts(run_id, f"{JOIN}#1", 8)
        rng.shuffle(joins)
        hammer(runs, joins, 8)
        for run_id in run_ids:
            events = [to_record(e) for e in runs.trace(run_id)]
            trace = check_trace(run_id, events)
            report.doubled += trace.doubled
            report.problems += trace.problems
            judge([a for a in attempts + joins if a.run_id == run_id], events, report)
            if runs.get_run(run_id).status != "completed":
                report.problems.append(f"{run_id} is {runs.get_run(run_id).status}, not completed")
    verdict("8 threads, one Runs", report, store, time.monotonic() - started)


TORN_APPEND = """
import sys
from loopengt_core.model.events import CheckpointTaken
from loopengt_core.service.logs import configure as configure_logging
from loopengt_core.store.files import FileStore
store, label = sys.argv[1], sys.argv[2]
FileStore(store).append("r", [CheckpointTaken(seq=2, at="2026-01-01T00:00:00Z", checkpoint_id="cp-2", label=label)])
"""


def _event(seq: int, label: str) -> CheckpointTaken:
    return CheckpointTaken(seq=seq, at="2026-01-01T00:00:00Z", checkpoint_id=f"cp-{seq}", label=label)


def _line_length(tmp: Path, label: str) -> int:
    """How long the log line of `_event(2, label)` is: a scratch run's log holds exactly one such line."""
    scratch = FileStore(tmp / f"scratch-{len(label)}")
    scratch.create_run("r", "x", [_event(2, label).model_copy(update={"seq": 1})])
    return (tmp / f"scratch-{len(label)}" / "runs" / "r" / "events.jsonl").stat().st_size


def test_a_torn_tail_replaced_by_another_process_is_seen(tmp_path: Path) -> None:
    """Two processes on one file store, and a third that died half-way through an append.

    Process A looks at the log while the torn tail is there. Process B then truncates the tail and appends
    its (acknowledged) event, which happens to be exactly as long as the tail was: the file has the same
    inode and the same size as when A looked. A must still see B's event, and must never write over it.
    """
    store = tmp_path / "store"
    log = store / "runs" / "r" / "events.jsonl"
    a = FileStore(store)
    a.create_run("r", "name: x\n", [_event(1, "start")])
    clean = log.stat().st_size
    x = subprocess.run(
        [sys.executable, "-c", TORN_APPEND, str(store), "x" * 400],
        env={**os.environ, "LOOPENGT_FAULT": "append.mid_write"},
        check=False,
    )
    assert x.returncode == -9  # killed at the fault point, half of its line written
    torn_size = log.stat().st_size
    assert a.last_seq("r") == 1  # A sees (and remembers) the log with its torn tail
    # B's label such that its line is exactly as long as the torn tail
    label = "y" * (torn_size - clean - _line_length(tmp_path, ""))
    assert _line_length(tmp_path, label) == torn_size - clean
    b = subprocess.run([sys.executable, "-c", TORN_APPEND, str(store), label], check=False)
    assert b.returncode == 0  # B's append returned: acknowledged
    assert log.stat().st_size == torn_size
    assert a.last_seq("r") == 2
    assert [event_data(e)["label"] for e in a.events("r", after=1)] == [label]
    with pytest.raises(StoreConflict):
        a.append("r", [_event(2, "from A, deciding on what it saw before B")])
    a.append("r", [_event(3, "from A")])
    assert [event_data(e)["label"] for e in FileStore(store).events("r")] == ["start", label, "from A"]
