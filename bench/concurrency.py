"""Steps/s of 1, 2, 4, 8 concurrent runs: in-process, over MCP stdio and over HTTP, beside a bare append+fsync.

Four ways of stepping N runs at once, each run a self-looping custom spec (bench/_common.py), each phase
N runs x --steps submissions of {"next": "again"}, timed from the first submission to the last answer:

- bare: N threads, each appending a ~300-byte line + fdatasync to its own file (the disk's own scaling);
- in-process: N threads calling `Runs.step` on one `Runs(FileStore)`, each on its own run;
- http: one `loopengt serve --transport streamable-http` process, N client sessions (one run each);
- stdio: one `loopengt serve` stdio process, one session, N runs stepped by concurrent calls.

Each server kind runs twice, group commit on (the default) and off (LOOPENGT_GROUP_COMMIT=0: a quick step
fsyncs on the event loop, as before group commit), and every kind takes turns in --rounds rounds, so
background load hits all alike; a figure is the median over rounds. Ratios: steps/s at N over steps/s at 1
of the same kind and mode (goal: 8 runs >= 3x one, in-process and HTTP), and group commit on / off at the
same N (1 run: at most 5% slower; measured again in --blocks blocks of 10 steps taking turns, one run on
each server, which shares drifts of load and disk between the two better than phases a round apart).
Overlap: LOOPENGT_FSYNC_STATS counts the log fsyncs of each process
(loopengt_core/store/groupsync.py); "overlap" is the share that began while another was in flight, "mean
in flight" the mean number in flight when one began (1 = alone). Server CPU: the server process's CPU
time per step (/proc), which bounds what concurrency can gain on 2 cores. Each round takes the kinds in the
opposite order of the one before, so neither of a pair (on/off) always runs first.

--slow-fsync-ms MS: every log fdatasync (bare, in-process and in the servers) sleeps MS ms after the real
one, the GIL released as in a real one: the slow mode this VM's disk falls into at times (3-5 ms fsyncs,
against 0.2-0.7 ms), on demand, so the overlap that group commit buys can be measured whatever the disk
does today. Figures with it say so.

    python bench/concurrency.py                 # N = 1 2 4 8, 3 rounds
    python bench/concurrency.py --runs 1 8 --rounds 1 --steps 40
    python bench/concurrency.py --runs 1 8 --slow-fsync-ms 3   # as on the slow disk
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
from _common import AGAIN, LINE, bench_dir, finish, loop_spec, quiet_logs, structured
from mcp import Client, StdioServerParameters

from loopengt_core.store.groupsync import FSYNC_STATS_ENV, GROUP_COMMIT_ENV, sync_stats

ROOT = Path(__file__).resolve().parent.parent
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
SLOW_FSYNC_ENV = "BENCH_SLOW_FSYNC_MS"  # read by SLOWED in the server processes
# Run as `python -c SLOWED serve ...`: the server module, its fdatasync first made slower by BENCH_SLOW_FSYNC_MS.
SLOWED = f"""
import os, runpy, time
def slowed(sync, pause=float(os.environ.get({SLOW_FSYNC_ENV!r}, "0")) / 1000):
    def slow(fd):
        sync(fd)
        time.sleep(pause)
    return slow if pause else sync
os.fdatasync = slowed(os.fdatasync)
runpy.run_module("loopengt_server", run_name="__main__", alter_sys=True)
"""


def slow_fsyncs(ms: float) -> Callable[[int], None]:
    """The fdatasync for this process's kinds (bare, in-process), `ms` slower; the store's is set to it."""
    from loopengt_core.store.files import fsio

    pause = ms / 1000

    def slow(fd: int, sync: Callable[[int], None] = _datasync) -> None:
        sync(fd)
        time.sleep(pause)

    if ms:
        fsio.datasync = slow  # looked up when a store opens (fsio's docstring)
    return slow if ms else _datasync


def _overlap(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Of the fsyncs between two readings: how many, the share that overlapped another, the mean in flight."""
    began = [b - a for a, b in zip(before["began_with"], after["began_with"], strict=True)]
    syncs = sum(began)
    if not syncs:
        return {"syncs": 0, "overlap": 0.0, "mean_inflight": 0.0, "max_inflight": 0}
    return {
        "syncs": syncs,
        "overlap": 1 - began[0] / syncs,
        "mean_inflight": sum((k + 1) * c for k, c in enumerate(began)) / syncs,
        "max_inflight": max(k + 1 for k, c in enumerate(began) if c),
    }


def _threads(n: int, work: Callable[[int], None]) -> float:
    """Run work(i) on n threads started together; the wall time in seconds."""
    gate = threading.Barrier(n + 1)
    errors: list[Exception] = []

    def body(i: int) -> None:
        gate.wait()
        try:
            work(i)
        except Exception as exc:  # noqa: BLE001 - raised below: a failed step fails the bench
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return took


class Bare:
    """N threads, each one O_APPEND file: write a line, fdatasync, as many times as a run has steps."""

    def __init__(self, directory: Path, sync: Callable[[int], None] = _datasync) -> None:
        self.dir, self.sync = directory, sync

    def phase(self, n: int, steps: int) -> dict[str, Any]:
        fds = [
            os.open(self.dir / f"bare-{i}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            for i in range(n)
        ]

        def work(i: int) -> None:
            for _ in range(steps):
                os.write(fds[i], LINE)
                self.sync(fds[i])

        try:
            took = _threads(n, work)
        finally:
            for fd in fds:
                os.close(fd)
        return {"steps_s": n * steps / took}


class InProcess:
    """N threads stepping their own runs through one Runs(FileStore); fsyncs counted in this process."""

    def __init__(self, directory: Path) -> None:
        from loopengt_core.service.runs import Runs
        from loopengt_core.store.files import FileStore

        self.runs = Runs(FileStore(directory))

    def phase(self, n: int, steps: int) -> dict[str, Any]:
        views = [self.runs.start_run(spec=loop_spec(steps + 5)) for _ in range(n)]
        stats = sync_stats()
        assert stats is not None, "LOOPENGT_FSYNC_STATS is set before the store opens"
        before = stats.reading()
        cpu0, user0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_utime

        def work(i: int) -> None:
            run_id, task = views[i].run_id, views[i].tasks[0].task_id
            for _ in range(steps):
                task = self.runs.step(run_id, task, AGAIN).tasks[0].task_id

        took = _threads(n, work)
        cpu, user = time.process_time() - cpu0, resource.getrusage(resource.RUSAGE_SELF).ru_utime - user0
        return {
            "steps_s": n * steps / took,
            "cpu_ms": cpu * 1e3 / (n * steps),
            "user_ms": user * 1e3 / (n * steps),
            **_overlap(before, stats.reading()),
        }


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(pid) for pid in text)
    return found


class Server:
    """One loopengt server process (stdio or streamable HTTP), group commit on or off, and its clients."""

    def __init__(
        self, kind: str, directory: Path, group_commit: bool, stack: AsyncExitStack, slow_fsync_ms: float = 0
    ) -> None:
        self.kind, self.group_commit, self.stack = kind, group_commit, stack
        tag = f"{kind}-{'on' if group_commit else 'off'}"
        self.stats_path = directory / f"fsync-{tag}.json"
        self.env = {
            **os.environ,
            "LOOPENGT_LOG_LEVEL": "WARNING",
            FSYNC_STATS_ENV: str(self.stats_path),
            GROUP_COMMIT_ENV: "1" if group_commit else "0",
            "LOOPENGT_MAX_SESSIONS": "64",
            SLOW_FSYNC_ENV: str(slow_fsync_ms),
        }
        self.argv = [
            sys.executable,
            "-c",
            SLOWED,
            "serve",
            "--store",
            str(directory / f"store-{tag}"),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.url = ""
        self.clients: list[Client] = []
        self.log = directory / f"server-{tag}.log"

    async def start(self) -> None:
        if self.kind == "http":
            port = _free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [*self.argv, "--transport", "streamable-http", "--port", str(port)],
                    env=self.env,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            self.pid = self.proc.pid
            self.url = f"http://127.0.0.1:{port}/mcp"
            await _wait_port(port, self.proc, self.log)
            self.stack.callback(self._stop)
        else:
            known = _children()
            params = StdioServerParameters(
                command=self.argv[0], args=self.argv[1:], cwd=str(ROOT), env=self.env
            )
            self.clients.append(await self.stack.enter_async_context(Client(params)))
            (self.pid,) = _children() - known

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    async def _client(self, i: int) -> Client:
        if self.kind == "stdio":
            return self.clients[0]  # one session, N runs
        while len(self.clients) <= i:
            self.clients.append(await self.stack.enter_async_context(Client(self.url)))
        return self.clients[i]

    def reading(self) -> dict[str, Any]:
        for _ in range(50):
            try:
                return dict(json.loads(self.stats_path.read_text()))
            except (OSError, ValueError):
                time.sleep(0.05)
        return {"syncs": 0, "began_with": [0] * 16}

    async def phase(self, n: int, steps: int) -> dict[str, Any]:
        clients = [await self._client(i) for i in range(n)]
        runs: list[list[str]] = []
        for client in clients:
            view = structured(
                await client.call_tool("start_run", {"spec": loop_spec(steps + 5)}), "start_run"
            )
            runs.append([view["run_id"], view["tasks"][0]["task_id"]])
        # one untimed step each: the run is then cached in the server, so steps take the quick path
        await _step_all(clients, runs, 1)
        await anyio.sleep(0.45)  # the stats file is rewritten every 0.2 s while it changes
        before, cpu0, own0 = self.reading(), _cpu_s(self.pid), time.process_time()
        t0 = time.perf_counter()
        await _step_all(clients, runs, steps)
        took = time.perf_counter() - t0
        cpu, own = _cpu_s(self.pid) - cpu0, time.process_time() - own0
        await anyio.sleep(0.45)
        return {
            "steps_s": n * steps / took,
            "cpu_ms": cpu * 1e3 / (n * steps),
            "client_cpu_ms": own * 1e3 / (n * steps),
            "client_busy": own / took,
            **_overlap(before, self.reading()),
        }


async def alternating(on: Server, off: Server, blocks: int, steps: int) -> dict[str, Any]:
    """One run on each server, stepped in blocks of `steps` taking turns (the first of each pair alternates):
    group commit's cost to one run alone, with drifts of load and disk mode shared by both sides, which
    phases of a round apart are not. Ratio: steps/s on / off over all blocks; paired: median per pair."""
    sides = (on, off)
    clients = [await server._client(0) for server in sides]
    runs = []
    for client in clients:
        view = structured(
            await client.call_tool("start_run", {"spec": loop_spec(blocks * steps + 5)}), "start_run"
        )
        runs.append([view["run_id"], view["tasks"][0]["task_id"]])
    for client, run in zip(clients, runs, strict=True):
        await _step_all([client], [run], 1)  # cached in its server: the quick path from here on
    took: list[list[float]] = [[], []]
    for b in range(blocks):
        for i in (0, 1) if b % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            await _step_all([clients[i]], [runs[i]], steps)
            took[i].append(time.perf_counter() - t0)
    return {
        "blocks": blocks,
        "block_steps": steps,
        "on_steps_s": blocks * steps / sum(took[0]),
        "off_steps_s": blocks * steps / sum(took[1]),
        "ratio": sum(took[1]) / sum(took[0]),
        "paired": statistics.median(b / a for a, b in zip(took[0], took[1], strict=True)),
    }


async def _step_all(clients: list[Client], runs: list[list[str]], steps: int) -> None:
    async def drive(client: Client, run: list[str]) -> None:
        for _ in range(steps):
            answer = structured(
                await client.call_tool("step", {"run_id": run[0], "task_id": run[1], "output": AGAIN}), "step"
            )
            run[1] = answer["tasks"][0]["task_id"]

    async with anyio.create_task_group() as tg:
        for client, run in zip(clients, runs, strict=True):
            tg.start_soon(drive, client, run)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the HTTP server exited: {log.read_text()[-2000:]}")
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.aclose()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the HTTP server did not listen: {log.read_text()[-2000:]}") from None
            await anyio.sleep(0.05)


INITIALIZE = (
    json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        }
    )
    + "\n"
).encode()


def first_answer_s(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning a stdio server to its answer to `initialize` (what a client waits at start)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(INITIALIZE)
    proc.stdin.flush()
    line = proc.stdout.readline()
    took = time.perf_counter() - t0
    proc.stdin.close()
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if b'"result"' not in line:
        raise SystemExit(f"{argv}: no initialize answer: {line[:300]!r}")
    return took


def start_times(directory: Path, rounds: int) -> dict[str, Any]:
    """Time to the first answer of loopengt's stdio server and of the bare SDK server (bench/_noop_server.py),
    in turns; and the heaviest imports of loopengt's (-X importtime, cumulative)."""
    env = {**os.environ, "LOOPENGT_LOG_LEVEL": "WARNING"}
    loop = [sys.executable, "-m", "loopengt_server", "serve", "--store", str(directory / "store-start")]
    noop = [sys.executable, str(Path(__file__).with_name("_noop_server.py")), str(directory / "noop.log")]
    times: dict[str, list[float]] = {"loopengt": [], "sdk": []}
    for _ in range(rounds):
        times["loopengt"].append(first_answer_s(loop, env))
        times["sdk"].append(first_answer_s(noop, env))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *loop[1:]],
        input=INITIALIZE,
        capture_output=True,
        env=env,
        check=False,
        timeout=60,
    )
    rows = []
    for line in proc.stderr.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name.rstrip()))
    top = {name.strip(): us / 1e6 for us, name in rows if name.strip() in TOP_IMPORTS}
    return {
        "loopengt_s": statistics.median(times["loopengt"]),
        "sdk_s": statistics.median(times["sdk"]),
        "ratio": statistics.median(a / b for a, b in zip(times["loopengt"], times["sdk"], strict=True)),
        "imports_s": top,
    }


_ONE_RUN = """
import sys, tempfile, time
from _common import AGAIN, loop_spec, quiet_logs
try:
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore
except ImportError:  # a tree from before the layout of issue 21
    from loopengt_core.runs import Runs
    from loopengt_core.store.files import FileStore
import loopengt_core
assert loopengt_core.__file__.startswith(sys.argv[1]), f"imported {loopengt_core.__file__}, not {sys.argv[1]}"
quiet_logs()
runs, n = Runs(FileStore(tempfile.mkdtemp(dir=sys.argv[2]))), int(sys.argv[3])
view = runs.start_run(spec=loop_spec(n + 60))
run_id, task = view.run_id, view.tasks[0].task_id
for _ in range(50):
    task = runs.step(run_id, task, AGAIN).tasks[0].task_id
t0 = time.perf_counter()
for _ in range(n):
    task = runs.step(run_id, task, AGAIN).tasks[0].task_id
print((time.perf_counter() - t0) / n * 1e3)
"""


def one_run_on_off(directory: Path, blocks: int = 100, steps: int = 20) -> dict[str, Any]:
    """One run's in-process `Runs.step` ms with group commit on and off, in this process: two stores (each
    reads LOOPENGT_GROUP_COMMIT as it opens), a run on each, stepped in blocks taking turns (the first of each
    pair alternates). Fresh processes differ by more than 5% from one another here (memory layout, the
    disk's mood), which hid the figure; blocks in turns in one process see the same machine."""
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore

    stores: dict[str, Runs] = {}
    at: dict[str, tuple[str, str]] = {}  # name -> (run id, its open task)
    for name, value in (("on", "1"), ("off", "0")):
        with mock.patch.dict(os.environ, {GROUP_COMMIT_ENV: value}):
            runs = stores[name] = Runs(FileStore(directory / f"store-one-{name}"))
        view = runs.start_run(spec=loop_spec(blocks * steps + 60))
        at[name] = (view.run_id, view.tasks[0].task_id)

    def block(name: str, n: int) -> float:
        runs, (run_id, task) = stores[name], at[name]
        t0 = time.perf_counter()
        for _ in range(n):
            task = runs.step(run_id, task, AGAIN).tasks[0].task_id
        at[name] = (run_id, task)
        return (time.perf_counter() - t0) / n * 1e3

    for name in stores:
        block(name, 50)  # warm up: caches, the first fsyncs
    times: dict[str, list[float]] = {"on": [], "off": []}
    for b in range(blocks):
        for name in ("on", "off") if b % 2 == 0 else ("off", "on"):
            times[name].append(block(name, steps))
    for runs in stores.values():
        runs.close()
    return {
        "on_ms": statistics.median(times["on"]),
        "off_ms": statistics.median(times["off"]),
        "on_off": statistics.median(times["on"]) / statistics.median(times["off"]),
        "on_off_paired": statistics.median(a / b for a, b in zip(times["on"], times["off"], strict=True)),
        "blocks": blocks,
        "steps": steps,
    }


def one_run_before_after(before: Path, directory: Path, rounds: int, steps: int = 400) -> dict[str, Any]:
    """One run's in-process `Runs.step` ms with this code and with the checkout `before` (the code before
    group commit), each in a fresh process, taking turns (the order turns each round): everything changed
    since group commit came in."""
    here = Path(__file__).resolve().parent.parent
    times: dict[str, list[float]] = {"after": [], "before": []}
    order = [("before", before.resolve(), "1"), ("after", here, "1")]
    for r in range(rounds):
        for name, code, group_commit in order[r % 2 :] + order[: r % 2]:
            env = {
                **os.environ,
                "PYTHONPATH": f"{code}{os.pathsep}{code / 'bench'}",
                "PYTHONSAFEPATH": "1",
                GROUP_COMMIT_ENV: group_commit,
            }
            out = subprocess.run(
                [sys.executable, "-c", _ONE_RUN, str(code), str(directory), str(steps)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                cwd=code,
            )
            times[name].append(float(out.stdout))

    def ratio(a: str, b: str) -> tuple[float, float]:
        paired = statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
        return statistics.median(times[a]) / statistics.median(times[b]), paired

    vs_before, vs_before_paired = ratio("after", "before")
    return {
        "before_ms": statistics.median(times["before"]),
        "after_ms": statistics.median(times["after"]),
        "ratio": vs_before,
        "ratio_paired": vs_before_paired,
        "rounds": rounds,
    }


async def thread_hop_us(samples: int = 2000) -> float:
    """Median µs of one anyio worker-thread round trip (`to_thread.run_sync` of a no-op) on this machine: the
    SDK's stdio server makes one per line read and two per message written (mcp/server/stdio.py)."""
    times = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        await anyio.to_thread.run_sync(int)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


def bytes_per_step(directory: Path, steps: int = 200, size: int = 2048) -> dict[str, Any]:
    """Bytes the file store gains per step of one run whose outputs are `size` bytes of JSON (issue 19: goal
    <= 2x the output): the log alone, and the whole run directory (log, snapshot, task index)."""
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore

    runs = Runs(FileStore(directory / "store-bytes"))
    view = runs.start_run(spec=loop_spec(steps + 5))
    run_id, task = view.run_id, view.tasks[0].task_id
    output = {"next": "again", "pad": ""}
    output["pad"] = "x" * (size - len(json.dumps(output, separators=(",", ":"))))
    run_dir = directory / "store-bytes" / "runs" / run_id
    log = run_dir / "events.jsonl"

    def total() -> int:
        return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())

    log0, all0 = log.stat().st_size, total()
    for _ in range(steps):
        task = runs.step(run_id, task, output).tasks[0].task_id
    per_log, per_all = (log.stat().st_size - log0) / steps, (total() - all0) / steps
    out_bytes = len(json.dumps(output, separators=(",", ":")))
    return {
        "output_bytes": out_bytes,
        "log_per_step": per_log,
        "dir_per_step": per_all,
        "log_ratio": per_log / out_bytes,
        "dir_ratio": per_all / out_bytes,
        "steps": steps,
    }


# Top-level modules whose cumulative import time the start figure shows (where the time goes).
TOP_IMPORTS = (
    "loopengt_server.cli",
    "loopengt_server.mcp.app",
    "mcp",
    "mcp_types",
    "loopengt_core.model.events",
    "loopengt_core.service.runs",
    "loopengt_core.service.logs",
    "structlog",
    "pydantic",
    "typer",
)

KINDS = ("bare", "inprocess", "http-on", "http-off", "stdio-on", "stdio-off")


async def bench(
    ns: list[int],
    steps: int,
    rounds: int,
    directory: Path,
    kinds: list[str],
    *,
    slow_fsync_ms: float = 0,
    blocks: int = 0,
) -> dict[str, Any]:
    os.environ[FSYNC_STATS_ENV] = str(directory / "fsync-inprocess.json")
    sync = slow_fsyncs(slow_fsync_ms)
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {k: {n: [] for n in ns} for k in kinds}
    async with AsyncExitStack() as stack:
        servers = {
            name: Server(name.split("-")[0], directory, name.endswith("-on"), stack, slow_fsync_ms)
            for name in kinds
            if name not in ("bare", "inprocess")
        }
        for server in servers.values():
            await server.start()
        bare, inproc = Bare(directory, sync), InProcess(directory / "store-inprocess")
        for r in range(rounds):
            for n in ns:
                for kind in kinds if r % 2 == 0 else kinds[::-1]:  # in turns: no kind always first
                    if kind == "bare":
                        figure = bare.phase(n, steps)
                    elif kind == "inprocess":
                        figure = inproc.phase(n, steps)
                    else:
                        figure = await servers[kind].phase(n, steps)
                    samples[kind][n].append(figure)
                    print(
                        f"round {r + 1} N={n} {kind:9} {figure['steps_s']:8.0f} steps/s"
                        + (
                            f"  cpu {figure['cpu_ms']:.2f} ms/step"
                            f"  clients' cpu {figure.get('client_cpu_ms', 0):.2f} ms/step"
                            f" (busy {figure.get('client_busy', 0):.0%})  overlap {figure['overlap']:.0%}"
                            f" mean in flight {figure['mean_inflight']:.2f}"
                            if "overlap" in figure
                            else ""
                        ),
                        flush=True,
                    )
        alternated = {}
        for kind in ("http", "stdio"):
            if blocks and f"{kind}-on" in servers and f"{kind}-off" in servers:
                alternated[kind] = a = await alternating(
                    servers[f"{kind}-on"], servers[f"{kind}-off"], blocks, 10
                )
                print(
                    f"one run over {kind}, blocks of 10 steps in turns: group commit on/off {a['ratio']:.3f} "
                    f"(paired {a['paired']:.3f}; {a['on_steps_s']:.0f} vs {a['off_steps_s']:.0f} steps/s)",
                    flush=True,
                )
    return {"samples": samples, "figures": summarise(samples, ns), "alternating": alternated}


def ceiling(one_ms: float, f: dict[str, Any], cores: int = os.cpu_count() or 1) -> float:
    """The most N runs could gain over one run whose step takes `one_ms`, given the CPU a step costs at N:
    the server's event loop is one thread (its CPU a step bounds its steps/s), and the server and the
    clients' process share the machine's cores. Approximate: the server's CPU includes its fsync threads',
    though fsyncs under Overlap.HANDOFF stay on the event loop. In-process, the threads share one
    interpreter, which runs Python on one core at a time (the GIL): the process's user CPU a step bounds its
    steps/s (approximate too: some user time is C code that let go of the GIL; a syscall's time did)."""
    if "user_ms" in f:
        return min(cores * one_ms / float(f["cpu_ms"]), one_ms / float(f["user_ms"]))
    server, clients = float(f["cpu_ms"]), float(f["client_cpu_ms"])
    return min(one_ms / server, cores * one_ms / (server + clients))


def summarise(samples: dict[str, dict[int, list[dict[str, Any]]]], ns: list[int]) -> dict[str, Any]:
    """Medians over rounds of every figure; ratios against N=1 of the same kind and against group commit off."""
    out: dict[str, Any] = {}
    for kind, by_n in samples.items():
        out[kind] = {}
        for n in ns:
            rows = by_n[n]
            out[kind][n] = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        one = out[kind][ns[0]]["steps_s"]
        for n in ns:
            out[kind][n]["vs_one"] = out[kind][n]["steps_s"] / one
            # paired by round: the ratio within each round, then the median (background load cancels)
            out[kind][n]["vs_one_paired"] = statistics.median(
                a["steps_s"] / b["steps_s"] for a, b in zip(by_n[n], by_n[ns[0]], strict=True)
            )
            f = out[kind][n]
            # not at sizes too small for the CPU clocks (/proc and the user/system split count 10 ms ticks)
            if ("client_cpu_ms" in f or "user_ms" in f) and all(
                f.get(k, 1) > 0 for k in ("cpu_ms", "user_ms")
            ):
                f["ceiling"] = ceiling(1e3 / one, f)
    for kind in ("http", "stdio"):
        if f"{kind}-on" not in samples or f"{kind}-off" not in samples:
            continue
        for n in ns:
            on, off = samples[f"{kind}-on"][n], samples[f"{kind}-off"][n]
            out[f"{kind}-on"][n]["on_vs_off"] = statistics.median(
                a["steps_s"] / b["steps_s"] for a, b in zip(on, off, strict=True)
            )
    return out


def report(figures: dict[str, Any], ns: list[int]) -> None:
    print(
        "\nmedians over rounds (steps/s; x one run; group commit on/off; server CPU ms/step; fsync overlap;"
        " the clients' CPU ms/step, or in-process the user CPU of it; the ceiling of x one run that CPU leaves"
        " on this machine)"
    )
    for kind in figures:
        for n in ns:
            f = figures[kind][n]
            extra = f"  on/off {f['on_vs_off']:.2f}" if "on_vs_off" in f else ""
            if "overlap" in f:
                extra += f"  cpu {f['cpu_ms']:.2f} ms  overlap {f['overlap']:.0%}  in flight {f['mean_inflight']:.2f}"
            if "client_cpu_ms" in f:
                extra += f"  clients' cpu {f['client_cpu_ms']:.2f} ms"
            if "user_ms" in f:
                extra += f"  of it user {f['user_ms']:.2f} ms"
            if "ceiling" in f:
                extra += f"  ceiling x{f['ceiling']:.2f}"
            print(
                f"{kind:9} N={n}: {f['steps_s']:8.0f}  x{f['vs_one']:.2f} (paired {f['vs_one_paired']:.2f}){extra}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent runs (first: the base)"
    )
    parser.add_argument("--steps", type=int, default=60, help="steps per run per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--before", help="a checkout of the code before group commit: one run's step, A/B")
    parser.add_argument("--before-commit", default="", help="its commit (for the report)")
    parser.add_argument("--dir", help="work here (kept) instead of a fresh temp dir")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--slow-fsync-ms",
        type=float,
        default=0.0,
        help="every log fdatasync sleeps this long after the real one (the VM disk's slow mode, on demand)",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=30,
        help="one run on group commit on and off, this many blocks of 10 steps each in turns (0: skip)",
    )
    args = parser.parse_args(argv)
    if args.slow_fsync_ms < 0:
        parser.error(f"--slow-fsync-ms: use 0 or more milliseconds, not {args.slow_fsync_ms:g}")
    quiet_logs()
    began = time.monotonic()
    with bench_dir(args.dir, ".bench-concurrency-") as directory:
        out = anyio.run(
            functools.partial(bench, slow_fsync_ms=args.slow_fsync_ms, blocks=args.blocks),
            args.runs,
            args.steps,
            args.rounds,
            directory,
            args.kinds,
        )
        out["start"] = start_times(directory, max(3, args.rounds))
        out["bytes"] = bytes_per_step(directory)
        out["hop_us"] = anyio.run(thread_hop_us)
        out["one_run_on_off"] = one_run_on_off(directory)
        stats = sync_stats()
        if stats is not None:  # its file is in `directory`, removed next
            stats.close()
        if args.before:
            out["one_run"] = one_run_before_after(
                Path(args.before).resolve(), directory, max(9, 3 * args.rounds)
            )
            out["one_run"]["before_commit"] = args.before_commit
    out.update(runs=args.runs, steps=args.steps, rounds=args.rounds, slow_fsync_ms=args.slow_fsync_ms)
    if args.slow_fsync_ms:
        print(f"\n(every log fdatasync made {args.slow_fsync_ms:g} ms slower: --slow-fsync-ms)")
    report(out["figures"], args.runs)
    st = out["start"]
    print(
        f"\nfirst initialize answer: loopengt {st['loopengt_s']:.2f} s, bare SDK server {st['sdk_s']:.2f} s "
        f"(ratio {st['ratio']:.2f}); imports (cumulative s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in st["imports_s"].items())
    )
    o = out["one_run_on_off"]
    print(
        f"one run in-process, {o['blocks']} blocks of {o['steps']} steps in turns: {o['on_ms']:.3f} ms a step with "
        f"group commit on, {o['off_ms']:.3f} ms off (on/off {o['on_off']:.3f}, paired {o['on_off_paired']:.3f})"
    )
    if "one_run" in out:
        o = out["one_run"]
        print(
            f"one run in-process, fresh processes in turns: {o['after_ms']:.3f} ms a step, {o['before_ms']:.3f} ms "
            f"before group commit (ratio {o['ratio']:.3f}, paired {o['ratio_paired']:.3f})"
        )
    b = out["bytes"]
    print(
        f"bytes per step ({b['output_bytes']} B outputs): log {b['log_per_step']:.0f} B ({b['log_ratio']:.2f}x), "
        f"run directory {b['dir_per_step']:.0f} B ({b['dir_ratio']:.2f}x)"
    )
    finish(out, began, args.json)


if __name__ == "__main__":
    main()
