"""Long work (issue 14): commands outlive the call that made them due, calls answer within the bound.

The service (`Runs`) with a bound of about a second and gates of a few seconds; the same through the real
`mcp` client over stdio and streamable HTTP; a stdio server killed mid-gate and the next one finishing it.
The slow acceptance runs (a 150 s gate, 60 s client cuts) live in tests/long.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client
from mcp_helpers import HttpServer, ok, running, stdio_params, step, trace_events

from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.model.events import CommandAbandoned, CommandFinished, CommandStarted, to_record
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

BOUND = 1.0


def settles(runs: Runs, run_id: str, seconds: float = 5.0) -> bool:
    """Whether the run becomes settled within `seconds`: the worker thread leaves a run just after its last
    append, so a view that already shows the end can come a moment before `settled` does."""
    deadline = time.monotonic() + seconds
    while not runs.settled(run_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def gate_spec(gate: list[str], *, retries: int = 1, timeout: float = 60) -> dict[str, Any]:
    """One agent step checked by a command gate `tests` that retries (tests/long uses it too)."""
    return {
        "name": "long",
        "goal": "write and check",
        "pattern": "sequential",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [{"name": "write", "agent": "a", "verification_gates": ["tests"]}],
        "policy": {
            "max_turns": 6,
            "retry": {"max_retries": retries, "initial_delay_seconds": 0},
            "verification_gates": [
                {"name": "tests", "command": gate, "on_failure": "retry", "timeout_seconds": timeout}
            ],
        },
    }


def slow_gate(seconds: float, marker: Path) -> list[str]:
    """A gate that counts its runs in `marker`, prints a line, sleeps, and passes."""
    script = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "print('collected 3 tests', flush=True)\n"
        f"time.sleep({seconds})\n"
        "print('3 passed', flush=True)\n"
    )
    return [sys.executable, "-c", script]


def write_spec(root: Path, spec: dict[str, Any]) -> str:
    (root / "loop.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return "loop.yaml"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


def types_of(store: FileStore, run_id: str) -> list[str]:
    return [e.type for e in store.events(run_id)]


def test_a_step_answers_within_the_bound_and_the_gate_goes_on(store: FileStore, tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    runs = Runs(store, cwd=tmp_path, call_wait=BOUND)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(slow_gate(3, marker)))).run_id

    began = time.monotonic()
    answer = runs.step(run_id, "write#1", {"done": True})
    assert time.monotonic() - began < BOUND + 1.5
    assert answer.accepted
    assert answer.status == "running"
    assert answer.tasks == []
    [check] = answer.checking
    assert (check.kind, check.name, check.step, check.status) == ("gate", "tests", "write", "running")
    assert check.started_at is not None
    for _ in range(40):  # the interpreter may take a moment to start on a busy machine
        if check.last_output is not None:
            break
        time.sleep(0.05)
        [check] = runs.get_run(run_id).checking
    assert check.last_output == "collected 3 tests"
    assert f"get_run(run_id='{run_id}', wait_seconds=" in answer.next_action
    assert "Do not submit again" in answer.next_action
    assert "output_submitted" in types_of(store, run_id)  # durable before the answer

    # a client that timed out sends the same submission again: the same kind of answer, no second run
    again = runs.step(run_id, "write#1", {"done": True})
    assert again.checking
    assert again.accepted

    seen = 0
    while runs.get_run(run_id).checking:
        began = time.monotonic()
        view = runs.get_run(run_id, wait_seconds=30)  # clamped to the bound
        assert time.monotonic() - began < BOUND + 1.0
        seen += 1
        assert seen < 20
    view = runs.get_run(run_id)
    assert view.status == "completed"
    assert view.checking == []
    assert marker.read_text() == "x"  # the gate ran once
    assert types_of(store, run_id).count("command_started") == 1
    assert settles(runs, run_id)
    # the same submission once more answers as it did at the end, with the gate's result
    final = runs.step(run_id, "write#1", {"done": True})
    assert [(g.name, g.passed) for g in final.gate_results] == [("tests", True)]


def test_get_run_returns_as_soon_as_the_run_changes(store: FileStore, tmp_path: Path) -> None:
    runs = Runs(store, cwd=tmp_path, call_wait=5)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(slow_gate(1.5, tmp_path / "m")))).run_id
    began = time.monotonic()
    view = runs.step(run_id, "write#1", {"done": True})
    assert view.status == "completed"  # within the bound: the answer is exactly as before
    assert 1.5 <= time.monotonic() - began < 5
    assert [(g.name, g.passed) for g in view.gate_results] == [("tests", True)]

    # nothing changes: the wait runs to its bound and answers with the same view
    runs2 = Runs(store, cwd=tmp_path, call_wait=BOUND)
    began = time.monotonic()
    assert runs2.get_run(run_id, wait_seconds=0.5).status == "completed"
    assert time.monotonic() - began < 0.3  # an ended run does not wait

    other = runs2.start_run(spec_path="loop.yaml").run_id
    began = time.monotonic()
    assert runs2.get_run(other, wait_seconds=0.6).tasks[0].task_id == "write#1"
    assert 0.55 <= time.monotonic() - began < 1.5

    # another process's change wakes it (here: another service on the same store, like a second server)
    seq = store.last_seq(other)

    def submit_later() -> None:
        time.sleep(0.3)
        Runs(store, cwd=tmp_path, call_wait=BOUND).cancel_run(other, "done")

    began = time.monotonic()

    async def both() -> int:
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, submit_later)
            return await anyio.to_thread.run_sync(runs2.wait_for_change, other, seq, 5.0)
        raise AssertionError("unreachable")

    latest = anyio.run(both)
    assert latest > seq
    assert time.monotonic() - began < 1.5


@pytest.mark.parametrize("value", [-1, "soon", float("nan"), True])
def test_wait_seconds_must_be_a_number_of_seconds(store: FileStore, tmp_path: Path, value: Any) -> None:
    runs = Runs(store, cwd=tmp_path, call_wait=BOUND)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(["true"]))).run_id
    with pytest.raises(InvalidArgument, match="wait_seconds must be a number of seconds from 0 to 1"):
        runs.get_run(run_id, wait_seconds=value)


@pytest.mark.parametrize("value", ["0", "-3", "twenty", "1.5"])
def test_a_bad_call_wait_is_a_clear_error(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOOPENGT_CALL_WAIT", value)
    with pytest.raises(LoopengtError, match="LOOPENGT_CALL_WAIT must be a whole number of at least 1"):
        Runs(store)


def test_stop_commands_kills_the_group_and_the_policy_retries(store: FileStore, tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    gate = [
        "sh",
        "-c",
        f"sleep 60 & echo $! > {child}; trap '' TERM; echo started; wait",  # ignores SIGTERM: SIGKILL ends it
    ]
    runs = Runs(store, cwd=tmp_path, call_wait=BOUND)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(gate))).run_id
    assert runs.step(run_id, "write#1", {"done": True}).checking
    assert not runs.settled(run_id)

    began = time.monotonic()
    assert runs.stop_commands(run_id, "tasks/cancel from a test") == 1
    assert time.monotonic() - began < 2.5
    assert not _alive(int(child.read_text()))  # the whole group ended, the backgrounded sleep too
    [finished] = [e for e in store.events(run_id) if isinstance(e, CommandFinished)]
    assert finished.cancelled_by == "tasks/cancel from a test"
    assert to_record(finished)["data"]["cancelled_by"] == "tasks/cancel from a test"
    view = runs.get_run(run_id)
    assert view.status == "running"
    assert [t.task_id for t in view.tasks] == ["write#2"]
    assert "cancelled by tasks/cancel from a test" in (view.tasks[0].feedback or "")
    assert settles(runs, run_id)
    assert runs.stop_commands(run_id, "nobody") == 0


def _alive(pid: int) -> bool:
    for _ in range(20):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def claim_as_a_dead_process(store: FileStore, cwd: Path, run_id: str) -> int:
    """Claim the run's due command as a process of this host that then died (a server killed mid-gate);
    returns its pid."""
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    ghost = Runs(store, cwd=cwd, call_wait=BOUND)
    ghost.runner = ghost.commands.runner = f"{ghost.runner.rpartition(':')[0]}:{gone}"
    claimed, _ = ghost.commands._claim_next(run_id)
    assert claimed is not None
    return gone


def test_a_dead_runners_claim_is_abandoned_and_run_again(store: FileStore, tmp_path: Path) -> None:
    """A claim naming a process of this host that is gone (the server died mid-gate) is taken over."""
    marker = tmp_path / "runs.txt"
    runs = Runs(store, cwd=tmp_path, call_wait=BOUND)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(slow_gate(0.2, marker)))).run_id
    runs.step(run_id, "write#1", {"done": True}, run_commands=False)
    gone = claim_as_a_dead_process(store, tmp_path, run_id)

    fresh = Runs(store, cwd=tmp_path, call_wait=5)
    assert fresh.recover() == [run_id]
    for _ in range(50):
        if fresh.settled(run_id):
            break
        fresh.get_run(run_id, wait_seconds=1)
    assert fresh.get_run(run_id).status == "completed"
    events = store.events(run_id)
    [abandoned] = [e for e in events if isinstance(e, CommandAbandoned)]
    assert abandoned.runner.endswith(f":{gone}")
    assert abandoned.reason == "runner_died"
    assert abandoned.started_at is not None
    starts = [e.runner for e in events if isinstance(e, CommandStarted)]
    assert starts == [f"{fresh.runner.rpartition(':')[0]}:{gone}", fresh.runner]
    assert marker.read_text() == "x"
    # replay folds it the same
    from loopengt_core.model.state import project_run

    assert project_run(events).model_dump() == fresh.kernel.read(run_id).state.model_dump()


# --- through the real client ----------------------------------------------------------------------------


async def _drive_to_end(client: Client, run_id: str, *, bound: float) -> dict[str, Any]:
    for _ in range(40):
        began = time.monotonic()
        view = ok(await client.call_tool("get_run", {"run_id": run_id, "wait_seconds": 30}))
        assert time.monotonic() - began < bound + 2
        if not view["checking"]:
            return view
    raise AssertionError("the run never settled")


@contextlib.asynccontextmanager
async def connected(transport: str, root: Path) -> AsyncIterator[Client]:
    """The real client on a server subprocess (stdio or streamable HTTP) whose calls wait at most 1 s."""
    env = {"LOOPENGT_CALL_WAIT": "1"}
    if transport == "stdio":
        async with Client(
            stdio_params(root / "store", root, env=env), mode="auto", read_timeout_seconds=60
        ) as c:
            yield c
        return
    with running(HttpServer("streamable-http", root / "store", root, env=env)) as (server,):
        async with Client(server.url, read_timeout_seconds=60) as c:
            yield c


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_step_answers_checking_and_get_run_waits(tmp_path: Path, transport: str) -> None:
    marker = tmp_path / "runs.txt"
    write_spec(tmp_path, gate_spec(slow_gate(3, marker)))
    async with connected(transport, tmp_path) as client:
        run_id = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))["run_id"]
        began = time.monotonic()
        answer = ok(await step(client, run_id, "write#1", {"done": True}))
        assert time.monotonic() - began < 3
        assert answer["accepted"] is True
        assert answer["status"] == "running"
        assert [(c["name"], c["status"]) for c in answer["checking"]] == [("tests", "running")]
        assert "wait_seconds=1" in answer["next_action"]
        # the retry of a client whose call was cut: the same submission, no second gate run
        assert ok(await step(client, run_id, "write#1", {"done": True}))["checking"]
        view = await _drive_to_end(client, run_id, bound=1)
        assert view["status"] == "completed"
    assert marker.read_text() == "x"


@pytest.mark.anyio
async def test_a_stdio_server_killed_mid_gate_the_next_one_runs_it_again(tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    write_spec(tmp_path, gate_spec(slow_gate(4, marker)))
    params = stdio_params(tmp_path / "store", tmp_path, env={"LOOPENGT_CALL_WAIT": "1"})
    async with Client(params, mode="auto", read_timeout_seconds=60) as client:
        run_id = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))["run_id"]
        answer = ok(await step(client, run_id, "write#1", {"done": True}))
        assert answer["checking"]
        started = [e for e in await trace_events(client, run_id) if e["type"] == "command_started"]
        pid = int(started[0]["data"]["runner"].rpartition(":")[2])
        os.kill(pid, signal.SIGKILL)  # the server, as an editor's crash would
    for _ in range(100):  # its gate dies with it (PR_SET_PDEATHSIG), before it would have finished
        if "x" in marker.read_text():
            break
        time.sleep(0.05)
    async with Client(params, mode="auto", read_timeout_seconds=60) as client:
        view = await _drive_to_end(client, run_id, bound=1)
        assert view["status"] == "completed", view["next_action"]
        events = await trace_events(client, run_id)
    kinds = [e["type"] for e in events]
    assert kinds.count("command_started") == 2
    [abandoned] = [e for e in events if e["type"] == "command_abandoned"]
    assert abandoned["data"]["reason"] == "runner_died"
    assert abandoned["data"]["runner"].endswith(f":{pid}")
    assert kinds.index("command_abandoned") < len(kinds) - 1 - kinds[::-1].index("command_started")
    assert marker.read_text() == "xx"  # the abandoned run and the one that finished


def test_on_postgresql_a_wait_wakes_on_another_servers_change_through_listen_notify(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Two services on one database (two servers): the waiting one hears the other's append through
    LISTEN/NOTIFY, well before its safety poll (FEED_POLL_SECONDS)."""
    from loopengt_core.service.kernel import FEED_POLL_SECONDS
    from loopengt_core.store.postgres import PostgresStore

    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        waiting = Runs(first, cwd=tmp_path, call_wait=5)
        other = Runs(second, cwd=tmp_path, call_wait=5)
        run_id = waiting.start_run(spec_path=write_spec(tmp_path, gate_spec(["true"]))).run_id
        seq = first.last_seq(run_id)
        assert waiting.wait_for_change(run_id, seq, 0.5) == seq  # listening now; nothing changed

        def cancel_later() -> None:
            time.sleep(0.5)
            other.cancel_run(run_id, "done elsewhere")

        async def both() -> tuple[int, float]:
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.to_thread.run_sync, cancel_later)
                began = time.monotonic()
                latest = await anyio.to_thread.run_sync(waiting.wait_for_change, run_id, seq, 10.0)
                return latest, time.monotonic() - began
            raise AssertionError("unreachable")

        latest, took = anyio.run(both)
        assert latest > seq
        assert took < 0.5 + FEED_POLL_SECONDS / 2
        assert waiting.get_run(run_id).status == "cancelled"
        waiting.close()
    finally:
        first.close()
        second.close()


def test_spans_of_a_cancelled_gate_and_of_an_abandoned_attempt(store: FileStore, tmp_path: Path) -> None:
    """Tracing: the cancelled run of a gate says who cancelled it; an abandoned attempt has a span of its own."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from loopengt_core.service.telemetry import RunTracer

    exporter = InMemorySpanExporter()
    runs = Runs(store, cwd=tmp_path, call_wait=BOUND, tracer=RunTracer([SimpleSpanProcessor(exporter)]))
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(["sleep", "30"]))).run_id
    runs.step(run_id, "write#1", {"done": True}, run_commands=False)
    claim_as_a_dead_process(store, tmp_path, run_id)
    assert runs.get_run(run_id, wait_seconds=1).checking  # started here: its runner is gone
    assert runs.stop_commands(run_id, "a person") == 1
    spans = [s for s in exporter.get_finished_spans() if s.name == "execute_tool tests"]
    outcomes = [(s.attributes or {}).get("loopengt.outcome") for s in spans]
    assert outcomes == ["abandoned", "cancelled"]
    assert spans[1].status.description == "cancelled by a person"
    assert spans[0].context.span_id != spans[1].context.span_id


def test_cancelling_a_run_kills_its_running_gate(store: FileStore, tmp_path: Path) -> None:
    child = tmp_path / "gate.pid"
    runs = Runs(store, cwd=tmp_path, call_wait=BOUND)
    gate = ["sh", "-c", f"echo $$ > {child}; exec sleep 60"]
    run_id = runs.start_run(spec_path=write_spec(tmp_path, gate_spec(gate))).run_id
    assert runs.step(run_id, "write#1", {"done": True}).checking
    assert runs.cancel_run(run_id, "not needed").status == "cancelled"
    assert not _alive(int(child.read_text()))
    assert types_of(store, run_id)[-1] == "run_cancelled"  # nothing recorded after the end
    assert settles(runs, run_id)
