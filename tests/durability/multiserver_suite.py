"""Multi-server suite: three `loopengt serve --transport streamable-http --store postgresql://...` processes on one
fresh database, clients spread over them, runs driven across all three, one server killed with SIGKILL mid-run.
Run explicitly (it is not collected by `python -m pytest`):

    python -m pytest tests/durability/multiserver_suite.py -q -s

Needs LOOPENGT_TEST_POSTGRES (`.ci/postgres.sh && . .ci/postgres.env`): skipped without it locally, a failure
on CI (CI=true), like the Postgres store tests (the `postgres_dsn` fixture of tests/conftest.py).

A long evaluator/optimizer run: every open task is submitted at once through three client sessions, one on
each live server, with the same output: exactly one wins, the others get the idempotent answer, and all
three answers must be equal (the servers agree). A fan-out run of 8 branches races alongside, each branch
sent through two servers. In the middle, with requests in flight, one server is SIGKILLed: a call it never
answered is sent again through a live server (failover), and both runs complete on the other two. Then
every acknowledged output is in the trace exactly once, every task has at most one output_submitted, seqs
are contiguous, and `loopengt check --store DSN` exits 0.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from durability_helpers import (
    ServerGone,
    call,
    check_now,
    check_trace,
    read_trace,
    seed_from_env,
    structured,
    submissions,
)
from mcp import Client
from mcp_helpers import HttpServer, running, text_of

pytestmark = pytest.mark.anyio

SEED = seed_from_env()
BRANCHES = [f"b{i}" for i in range(1, 9)]

LOOP_SPEC = """\
name: across-servers
goal: One run driven through three servers, one of which dies
pattern: evaluator_optimizer
agents:
  - name: critic
  - name: coder
steps:
  - name: evaluate
    agent: critic
  - name: optimize
    agent: coder
policy:
  max_turns: 1000
stop_conditions:
  - {condition_type: quality_threshold, value: 0.8}
"""

FAN_SPEC = (
    "name: fan-across-servers\ngoal: Branches through different servers\npattern: parallel_fan_out\n"
    "agents:\n  - name: worker\n  - name: lead\nsteps:\n"
    + "".join(f"  - name: {b}\n    agent: worker\n" for b in BRANCHES)
    + f"  - name: merge\n    agent: lead\n    dependencies: [{', '.join(BRANCHES)}]\n"
    + "policy:\n  max_concurrency: 8\n  max_turns: 100\n"
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Job:
    tool: str
    args: dict[str, Any]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    gone: bool = False


class Remote:
    """One client session to one server, in its own task: a dead server tears down this session only."""

    def __init__(self, name: str, server: HttpServer, index: int, mode: str) -> None:
        self.name = name
        self.server = server
        self.index = index
        self.mode = mode
        self.alive = False
        self.cut_off = 0  # calls in flight (or queued) when the connection died
        self.inbox, self._receive = anyio.create_memory_object_stream[Job](1000)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with Client(self.server.url, mode=self.mode, read_timeout_seconds=60) as client:
                self.alive = True
                task_status.started()
                async with anyio.create_task_group() as calls:
                    async for job in self._receive:
                        calls.start_soon(self._run, client, job)
        except Exception:  # the transport's failure when the server died (an ExceptionGroup of httpx errors)
            pass
        finally:
            self.alive = False
            self._fail_queued()

    async def _run(self, client: Client, job: Job) -> None:
        try:
            job.result = await call(client, job.tool, job.args)
        except ServerGone:
            job.gone = True
        finally:
            if job.result is None:
                job.gone = True
                self.cut_off += 1
            job.done.set()

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            job.gone = True
            self.cut_off += 1
            job.done.set()

    async def request(self, tool: str, args: dict[str, Any]) -> Any:
        if not self.alive:
            raise ServerGone(f"{self.name}: its server is dead")
        job = Job(tool, args)
        await self.inbox.send(job)
        await job.done.wait()
        if job.gone:
            raise ServerGone(f"{self.name}: the server died under the call")
        return job.result


@dataclass
class Ledger:
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> task_id -> output
    failovers: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def ack(self, run_id: str, task_id: str, output: Any) -> None:
        self.acked.setdefault(run_id, {})[task_id] = output


class Cluster:
    def __init__(self, servers: list[HttpServer], remotes: list[Remote], rng: random.Random) -> None:
        self.servers = servers
        self.remotes = remotes
        self.rng = rng
        self.ledger = Ledger()
        self.killed: int | None = None
        self.kill_round = anyio.Event()  # set as the round with the kill begins: the fan-out races it

    def live(self) -> list[Remote]:
        return [r for r in self.remotes if r.alive and r.index != self.killed]

    def one_per_server(self) -> list[Remote]:
        """A random live session on each live server."""
        chosen = []
        for index in range(len(self.servers)):
            options = [r for r in self.live() if r.index == index]
            if options:
                chosen.append(self.rng.choice(options))
        return chosen

    async def submit(
        self, run_id: str, task_id: str, output: Any, through: list[Remote], *, alone: bool = True
    ) -> dict[str, Any]:
        """The same output through several sessions at once; a call cut off by a dying server fails over.

        All answers must agree: on `accepted` and the gate results always, and on the whole view when
        nothing else changes the run meanwhile (`alone`: a sequential run driven by this call only).
        """
        answers: list[dict[str, Any]] = []
        cut = 0

        async def one(remote: Remote) -> None:
            nonlocal cut
            try:
                result = await remote.request(
                    "step", {"run_id": run_id, "task_id": task_id, "output": output}
                )
            except ServerGone:
                cut += 1
                return
            if result.is_error:
                self.ledger.problems.append(f"{run_id} {task_id} through {remote.name}: {text_of(result)}")
                return
            answers.append(structured(result))

        async with anyio.create_task_group() as group:
            for remote in through:
                group.start_soon(one, remote)
        if cut:
            for _ in range(3):  # failover: send it again through a live server until one answers
                remote = self.rng.choice(self.live())
                try:
                    result = await remote.request(
                        "step", {"run_id": run_id, "task_id": task_id, "output": output}
                    )
                except ServerGone:
                    continue
                self.ledger.failovers += 1
                if result.is_error:
                    self.ledger.problems.append(f"{run_id} {task_id} failover: {text_of(result)}")
                else:
                    answers.append(structured(result))
                break
        if not answers:
            raise AssertionError(f"{run_id} {task_id}: no server accepted it; {self.ledger.problems}")
        self.ledger.duplicates += len(answers) - 1
        first = answers[0]
        for other in answers[1:]:
            if alone:
                same = other == first
            else:
                same = (other["accepted"], other["gate_results"]) == (
                    first["accepted"],
                    first["gate_results"],
                )
            if not same:
                self.ledger.problems.append(
                    f"{run_id} {task_id}: servers answered differently:\n{first}\n{other}"[:3000]
                )
        self.ledger.ack(run_id, task_id, output)
        return first

    def kill(self, index: int) -> None:
        self.killed = index
        self.servers[index].kill()


async def drive_loop(cluster: Cluster, kill_at: int, turns: int) -> str:
    """The evaluator/optimizer run, each task through all live servers; kills a server mid-run."""
    starter = cluster.rng.choice(cluster.live())
    view = structured(await starter.request("start_run", {"spec": LOOP_SPEC, "run_id": "across"}))
    run_id = view["run_id"]
    for round_ in range(turns + 10):
        if view["status"] != "running":
            break
        [task] = view["tasks"]
        finishing = round_ >= turns
        nonce = f"{run_id}/{task['task_id']}/{round_}"
        if task["step"] == "evaluate":
            output: dict[str, Any] = {"score": 0.95 if finishing else 0.1, "nonce": nonce}
        else:
            output = {"summary": f"revision {round_}", "nonce": nonce}
        through = cluster.one_per_server()
        if round_ == kill_at:
            victim = cluster.rng.randrange(len(cluster.servers))
            cluster.kill_round.set()

            async with anyio.create_task_group() as group:
                group.start_soon(kill_soon, cluster, victim)
                view = await cluster.submit(run_id, task["task_id"], output, through)
        else:
            view = await cluster.submit(run_id, task["task_id"], output, through)
    assert view["status"] == "completed", view
    return run_id


async def kill_soon(cluster: Cluster, victim: int) -> None:
    await anyio.sleep(cluster.rng.uniform(0.0, 0.006))  # while the round's calls are in flight
    cluster.kill(victim)


async def drive_fan(cluster: Cluster) -> str:
    """The fan-out run: every branch through two different servers at once, then the join."""
    starter = cluster.rng.choice(cluster.live())
    view = structured(await starter.request("start_run", {"spec": FAN_SPEC, "run_id": "fan"}))
    run_id = view["run_id"]
    await cluster.kill_round.wait()  # the branches race the kill
    tasks = [t["task_id"] for t in view["tasks"]]

    async def branch(task_id: str) -> None:
        live = cluster.one_per_server()
        pair = cluster.rng.sample(live, min(2, len(live)))
        await cluster.submit(run_id, task_id, {"summary": f"{task_id} done"}, pair, alone=False)

    async with anyio.create_task_group() as group:
        for task_id in tasks:
            group.start_soon(branch, task_id)
    view = structured(await cluster.live()[0].request("get_run", {"run_id": run_id}))
    [join] = view["tasks"]
    view = await cluster.submit(run_id, join["task_id"], {"summary": "merged"}, cluster.one_per_server())
    assert view["status"] == "completed", view
    return run_id


@pytest.mark.timeout(300)
async def test_three_servers_on_postgres_one_killed_mid_run(postgres_dsn: str, tmp_path: Path) -> None:
    started_at = time.monotonic()
    rng = random.Random(f"{SEED}-multiserver")
    env = {"LOOPENGT_SNAPSHOT_EVERY": "5"}
    # HttpServer passes `store` to --store as text: a DSN works as well as a directory
    servers = [HttpServer("streamable-http", postgres_dsn, tmp_path, env=env) for _ in range(3)]  # type: ignore[arg-type]
    with running(*servers):
        remotes = [
            Remote(f"server{i}/{mode}", servers[i], i, mode) for i in range(3) for mode in ("auto", "legacy")
        ]
        cluster = Cluster(servers, remotes, rng)
        turns = rng.randint(40, 60)
        kill_at = rng.randint(12, turns - 12)
        run_ids: list[str] = []
        async with anyio.create_task_group() as sessions:
            for remote in remotes:
                await sessions.start(remote.serve)

            async def loop_then_stop() -> None:
                async with anyio.create_task_group() as runs:
                    runs.start_soon(lambda: _collect(run_ids, drive_loop(cluster, kill_at, turns)))
                    runs.start_soon(lambda: _collect(run_ids, drive_fan(cluster)))
                # read everything back through a live session, then close the sessions
                reader = cluster.live()[0]
                await verify(cluster, reader, run_ids)
                for remote in remotes:
                    remote.inbox.close()

            sessions.start_soon(loop_then_stop)
        victim = cluster.killed
        assert victim is not None
        assert servers[victim].proc is not None
        assert servers[victim].proc.returncode == -9
        for index, server in enumerate(servers):
            if index != victim:
                assert server.proc is not None
                assert server.proc.poll() is None, server.log()
    code, out = check_now(postgres_dsn)
    cut_off = sum(r.cut_off for r in remotes if r.index == victim)
    print(
        f"\n[multiserver] killed server {victim} at round {kill_at} of ~{turns} ({cut_off} calls cut off), "
        f"{sum(len(v) for v in cluster.ledger.acked.values())} acknowledged steps, "
        f"{cluster.ledger.duplicates} duplicate answers, {cluster.ledger.failovers} failovers, "
        f"loopengt check exit {code}, {time.monotonic() - started_at:.1f} s (seed {SEED})"
    )
    assert cluster.ledger.problems == [], "\n".join(cluster.ledger.problems)
    assert code == 0, out


async def _collect(run_ids: list[str], driver: Any) -> None:
    run_ids.append(await driver)


async def verify(cluster: Cluster, reader: Remote, run_ids: list[str]) -> None:
    """Every acknowledged output once, no task submitted twice, seqs contiguous (read through a live server)."""
    assert sorted(run_ids) == ["across", "fan"]
    lost = doubled = 0
    for run_id in run_ids:
        events = await _trace(reader, run_id)
        report = check_trace(run_id, events)
        doubled += report.doubled
        cluster.ledger.problems += report.problems
        for task_id, output in cluster.ledger.acked.get(run_id, {}).items():
            if submissions(events, task_id) != [output]:
                lost += 1
                cluster.ledger.problems.append(
                    f"{run_id}: acknowledged {task_id} recorded as {submissions(events, task_id)}"
                )
        issued = {e["data"]["task_id"] for e in events if e["type"] == "task_issued"}
        submitted = {e["data"]["task_id"] for e in events if e["type"] == "output_submitted"}
        if issued != submitted:
            cluster.ledger.problems.append(
                f"{run_id}: tasks issued but never submitted: {issued - submitted}"
            )
        if events[-1]["type"] != "run_completed":
            cluster.ledger.problems.append(f"{run_id}: the trace ends with {events[-1]['type']}")
    print(f"\n[multiserver] lost {lost}, doubled {doubled}")
    assert (lost, doubled) == (0, 0), cluster.ledger.problems


async def _trace(remote: Remote, run_id: str) -> list[dict[str, Any]]:
    """The trace resource, read through the remote's own session (a resource read, not a tool call)."""
    async with Client(remote.server.url, mode=remote.mode, read_timeout_seconds=60) as client:
        return await read_trace(client, run_id)
