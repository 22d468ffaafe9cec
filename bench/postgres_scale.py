"""Durable steps per second with 1, 2 and 4 worker processes on one PostgreSQL, beside the file store.

Each configuration (a process count x a store) gets a fresh store: a new database `bench_<hex>` on the
DSN's server (created through a connection to the DSN, dropped afterwards), or a new directory for the
file store. N worker processes then open that one store (`Runs(open_store(location))`, as `loopengt
serve` does) and each drives K runs of the self-looping bench spec at once, one thread a run. After a
short untimed warm-up of every run, all processes start together and submit a fixed total of steps (split
evenly over the N x K runs). The figures are ratios measured in this one command: each count against one
process, and PostgreSQL against the file store at the same count: steps/s, latency, and CPU per step
(loopengt's processes plus, for PostgreSQL, the database server's, against the file store's). Before the
timed configurations it counts the round trips and statements one step sends to PostgreSQL, from libpq's
protocol trace (bench/_pgtrace.py).

    python bench/postgres_scale.py                     # 1, 2, 4 processes x file, postgres; 2000 steps each
    python bench/postgres_scale.py --dsn postgresql://user@db-host/dbname    # a real (durable) server
    python bench/postgres_scale.py --http              # the same through N `loopengt serve` HTTP servers

The DSN comes from --dsn or LOOPENGT_TEST_POSTGRES (`bash .ci/postgres.sh && . .ci/postgres.env` starts a
throwaway server here; it runs with fsync off, which the output points out).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import AGAIN, FsyncFloor, bench_dir, finish, loop_spec, median, ms, pct, quiet_logs
from _pgtrace import Tracer, Trips

from loopengt_core.model.spec import LoopSpec

STORES = ("file", "postgres")
READY_TIMEOUT = 120.0  # seconds for every worker to start its runs and warm up
RUN_TIMEOUT = 600.0  # seconds for the timed phase of one configuration


# ------------------------------------------------------------------------------------------ PostgreSQL


def _with_database(dsn: str, name: str) -> str:
    """The DSN with its database replaced by `name` (a postgresql:// URL, as `--store` takes)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    netloc = (
        f"{parts.username + '@' if parts.username else ''}{host}{':' + str(parts.port) if parts.port else ''}"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def server_settings(dsn: str) -> dict[str, str]:
    """What makes a commit durable (or not) on this server, and its version."""
    import psycopg

    names = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


@contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """A new empty database on the DSN's server (schema migrated), dropped afterwards; yields its DSN."""
    import psycopg

    from loopengt_core.store.postgres import PostgresStore

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as admin:
        try:
            admin.execute(f'CREATE DATABASE "{name}"')
        except psycopg.errors.InsufficientPrivilege:
            raise SystemExit(
                f"the role in {_redact(dsn)} may not CREATE DATABASE; the bench needs a fresh database "
                "per configuration (GRANT CREATEDB, or use another role)"
            ) from None
    target = _with_database(dsn, name)
    try:
        PostgresStore(target).close()  # migrate once here, not in N racing workers
        yield target
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as admin:
            try:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            except psycopg.errors.ObjectInUse:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postmaster_pid(dsn: str) -> int | None:
    """The pid of the server's postmaster when it runs on this machine (the parent of our backend), else None."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        try:
            parent = _stat(backend)[0]
            if "postgres" in Path(f"/proc/{parent}/comm").read_text():
                return parent
        except (OSError, ValueError, IndexError):
            pass
        return None


# ------------------------------------------------------------------------------------------ CPU meters

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, int, int]:
    """(ppid, own CPU ticks, reaped children's CPU ticks) of a process, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ...
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


class CpuMeter:
    """Whole-machine busy CPU (/proc/stat) and, when local, the PostgreSQL server's CPU (postmaster + children)."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    def read(self, pids: list[int]) -> tuple[float, float, float | None, float | None]:
        """(busy CPU s, total CPU s, server CPU s or None, CPU s of `pids` or None) since boot."""
        try:
            numbers = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        except OSError:
            return 0.0, 0.0, None, None
        mine: float | None = None
        with suppress(OSError, ValueError, IndexError):
            mine = sum(_stat(pid)[1] for pid in pids) / _TICK if pids else None
        idle = numbers[3] + numbers[4]  # idle + iowait
        server = None
        if self.postmaster is not None:
            try:
                _, own, reaped = _stat(self.postmaster)
                ticks = own + reaped
                for entry in Path("/proc").iterdir():
                    if entry.name.isdigit():
                        with suppress(OSError, ValueError, IndexError):
                            ppid, child, _ = _stat(int(entry.name))
                            if ppid == self.postmaster:
                                ticks += child
                server = ticks / _TICK
            except OSError:
                server = None
        return (sum(numbers) - idle) / _TICK, sum(numbers) / _TICK, server, mine


# ------------------------------------------------------------------------------------------ workers


@dataclass(frozen=True)
class Job:
    """What one worker process does: `counts[i]` timed steps on its i-th run, after `warmup` untimed ones."""

    index: int
    target: str  # the store location (service) or the server's URL (--http)
    counts: list[int]
    warmup: int


def bench_spec(turns: int) -> dict[str, Any]:
    """The self-looping bench spec, recording no workspace (git snapshots of the working directory) when
    this loopengt can: the figures are about the store, and every run here starts in the same directory."""
    spec = loop_spec(turns)
    if "workspace" in LoopSpec.model_fields:
        spec["workspace"] = "none"
    return spec


def _split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal counts."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _finish(runs: Any, run_id: str, task: str) -> None:
    """Route to `done` and complete it: the run really worked."""
    answer = runs.step(run_id, task, {"next": "stop"})
    answer = runs.step(run_id, answer.tasks[0].task_id, {"done": True})
    if answer.status != "completed":
        raise RuntimeError(f"bench run {run_id} ended {answer.status}, expected completed: {answer.error}")


@dataclass(frozen=True)
class Channels:
    """Parent <-> workers. A worker: warm up, `ready`; wait `start`; time its steps, put them on `results`;
    wait `release` (so finishing and closing stay out of the CPU readings); finish its runs, put a last
    message (`finished` or `error`) on `results`."""

    ready: Any
    start: Any
    release: Any
    results: Any


def service_worker(job: Job, chan: Channels) -> None:
    """One worker process: len(counts) runs on its own `Runs`, one thread a run, timed from `start`."""
    index, location, counts, warmup = job.index, job.target, job.counts, job.warmup
    try:
        quiet_logs()
        from loopengt_core.service.runs import Runs
        from loopengt_core.store import open_store

        runs = Runs(open_store(location))
        tasks: dict[str, str] = {}
        for count in counts:
            view = runs.start_run(spec=bench_spec(count + warmup))
            task = view.tasks[0].task_id
            for _ in range(warmup):
                task = runs.step(view.run_id, task, AGAIN).tasks[0].task_id
            tasks[view.run_id] = task
        samples: list[list[int]] = [[] for _ in counts]
        errors: list[str] = []
        gate = threading.Barrier(len(counts) + 1)

        def drive(slot: int, run_id: str, count: int) -> None:
            lat = samples[slot]
            task = tasks[run_id]
            clock = time.perf_counter_ns
            gate.wait()
            try:
                for _ in range(count):
                    t0 = clock()
                    task = runs.step(run_id, task, AGAIN).tasks[0].task_id
                    lat.append(clock() - t0)
                tasks[run_id] = task
            except Exception:  # noqa: BLE001 - reported to the parent, which stops the bench
                errors.append(traceback.format_exc())

        threads = [
            threading.Thread(target=drive, args=(slot, run_id, count), daemon=True)
            for slot, (run_id, count) in enumerate(zip(tasks, counts, strict=True))
        ]
        for thread in threads:
            thread.start()
        chan.ready.put(index)
        chan.start.wait()
        cpu0, t0 = time.process_time(), time.monotonic_ns()
        gate.wait()
        for thread in threads:
            thread.join()
        t1, cpu1 = time.monotonic_ns(), time.process_time()
        if errors:
            raise RuntimeError(errors[0])
        lat = [x for s in samples for x in s]
        chan.results.put({"index": index, "t0": t0, "t1": t1, "cpu": cpu1 - cpu0, "lat": lat})
        chan.release.wait()
        for run_id, task in tasks.items():
            _finish(runs, run_id, task)
        runs.store.close()
        chan.results.put({"index": index, "finished": True})
    except BaseException:  # noqa: BLE001 - reported to the parent, which stops the bench
        chan.results.put({"index": index, "error": traceback.format_exc()})


# ------------------------------------------------------------------------------------------ HTTP variant


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _structured(result: Any, what: str) -> dict[str, Any]:
    if result.is_error:
        text = result.content[0].text if result.content else ""
        raise RuntimeError(f"{what} failed: {text}")
    return result.structured_content or {}


def http_worker(job: Job, chan: Channels) -> None:
    """One client process: len(counts) MCP sessions to one server, one run each, driven concurrently."""
    index, url, counts, warmup = job.index, job.target, job.counts, job.warmup
    try:
        import anyio
        from mcp import Client

        async def main() -> None:
            samples: list[list[int]] = [[] for _ in counts]
            prepared = [anyio.Event() for _ in counts]
            measured = [anyio.Event() for _ in counts]
            began, released = anyio.Event(), anyio.Event()

            async def session(slot: int, count: int) -> None:
                async with Client(url) as client:

                    async def step(run_id: str, task: str, output: dict[str, Any]) -> dict[str, Any]:
                        args = {"run_id": run_id, "task_id": task, "output": output}
                        return _structured(await client.call_tool("step", args), "step")

                    spec = bench_spec(count + warmup)
                    view = _structured(await client.call_tool("start_run", {"spec": spec}), "start_run")
                    run_id, task = view["run_id"], view["tasks"][0]["task_id"]
                    for _ in range(warmup):
                        task = (await step(run_id, task, AGAIN))["tasks"][0]["task_id"]
                    prepared[slot].set()
                    await began.wait()
                    lat, clock = samples[slot], time.perf_counter_ns
                    for _ in range(count):
                        t0 = clock()
                        task = (await step(run_id, task, AGAIN))["tasks"][0]["task_id"]
                        lat.append(clock() - t0)
                    measured[slot].set()
                    await released.wait()
                    answer = await step(run_id, task, {"next": "stop"})
                    answer = await step(run_id, answer["tasks"][0]["task_id"], {"done": True})
                    if answer["status"] != "completed":
                        raise RuntimeError(f"bench run {run_id} ended {answer['status']}")

            async with anyio.create_task_group() as group:
                for slot, count in enumerate(counts):
                    group.start_soon(session, slot, count)
                for event in prepared:
                    await event.wait()
                chan.ready.put(index)
                await anyio.to_thread.run_sync(chan.start.wait)
                t0, cpu0 = time.monotonic_ns(), time.process_time()
                began.set()
                for event in measured:
                    await event.wait()
                t1, cpu1 = time.monotonic_ns(), time.process_time()
                lat = [x for s in samples for x in s]
                chan.results.put({"index": index, "t0": t0, "t1": t1, "cpu": cpu1 - cpu0, "lat": lat})
                await anyio.to_thread.run_sync(chan.release.wait)
                released.set()

        anyio.run(main)
        chan.results.put({"index": index, "finished": True})
    except BaseException:  # noqa: BLE001 - reported to the parent, which stops the bench
        chan.results.put({"index": index, "error": traceback.format_exc()})


@contextmanager
def http_servers(location: str, count: int, log_dir: Path) -> Iterator[tuple[list[str], list[int]]]:
    """`count` `loopengt serve --transport streamable-http` processes on one store; yields (URLs, pids)."""
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []
    urls = []
    env = {**os.environ, "LOOPENGT_LOG_LEVEL": "WARNING"}
    try:
        for i in range(count):
            port = _free_port()
            log = (log_dir / f"server-{i}-{port}.log").open("wb")
            argv = [sys.executable, "-m", "loopengt_server", "serve", "--transport", "streamable-http"]
            argv += ["--port", str(port), "--store", location]
            procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log))
            urls.append(f"http://127.0.0.1:{port}/mcp")
        deadline = time.monotonic() + 60
        for (proc, _), url in zip(procs, urls, strict=True):
            port = int(urlsplit(url).port or 0)
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server for {url} exited with {proc.returncode}; see {log_dir}")
                with socket.socket() as sock, suppress(OSError):
                    sock.settimeout(0.5)
                    sock.connect(("127.0.0.1", port))
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server for {url} did not listen within 60 s")
                time.sleep(0.1)
        yield urls, [proc.pid for proc, _ in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# ------------------------------------------------------------------------------------------ one configuration


@dataclass
class Figures:
    processes: int
    store: str
    runs: int
    steps: int
    wall_s: float
    per_s: float
    median_ms: float
    p99_ms: float
    cpu_cores: float  # worker (client) CPU seconds per wall second: cores the workers kept busy
    server_cores: float | None  # the PostgreSQL server's CPU seconds per wall second (local server only)
    loopengt_cores: float | None  # with --http: the `loopengt serve` processes' CPU seconds per wall second
    machine_busy: float  # busy share of all the machine's CPUs over the timed phase (everyone's work)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_config(
    *,
    processes: int,
    store: str,
    location: str,
    per_process: int,
    steps: int,
    warmup: int,
    urls: list[str] | None,
    meter: CpuMeter,
    server_pids: list[int] | None = None,
) -> Figures:
    """Start N workers on `location` (or, with `urls`, N clients of those servers); time the fixed steps."""
    ctx = mp.get_context("spawn")
    chan = Channels(ready=ctx.Queue(), start=ctx.Event(), release=ctx.Event(), results=ctx.Queue())
    counts = _split(steps, processes * per_process)
    procs = []
    for i in range(processes):
        mine = counts[i * per_process : (i + 1) * per_process]
        job = Job(i, location if urls is None else urls[i % len(urls)], mine, warmup)
        worker = service_worker if urls is None else http_worker
        proc = ctx.Process(target=worker, args=(job, chan), daemon=True)
        proc.start()
        procs.append(proc)
    got: list[dict[str, Any]] = []
    finished = 0

    def take() -> dict[str, Any]:
        item: dict[str, Any] = chan.results.get(timeout=RUN_TIMEOUT)
        if "error" in item:
            raise SystemExit(f"{store} worker {item['index']} failed:\n{item['error']}")
        return item

    try:
        waiting = processes
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting:
            try:
                chan.ready.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                waiting -= 1
            except queue.Empty:
                early = None
                with suppress(queue.Empty):
                    early = chan.results.get_nowait()  # a worker failed before it was ready
                if early is not None:
                    raise SystemExit(
                        f"{store} worker {early['index']} failed:\n{early.get('error')}"
                    ) from None
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers not ready within {READY_TIMEOUT:.0f} s") from None
        pids = server_pids or []
        before = meter.read(pids)
        chan.start.set()
        got = [take() for _ in range(processes)]
        after = meter.read(pids)
        chan.release.set()
        for _ in range(processes):
            finished += bool(take().get("finished"))
    finally:
        for proc in procs:
            proc.join(timeout=30 if finished == processes else 0)  # on failure, stop the others now
            if proc.is_alive():
                proc.terminate()
                proc.join()
    wall = (max(r["t1"] for r in got) - min(r["t0"] for r in got)) / 1e9
    lat = [x for r in got for x in r["lat"]]
    return Figures(
        processes=processes,
        store=store,
        runs=processes * per_process,
        steps=len(lat),
        wall_s=wall,
        per_s=len(lat) / wall,
        median_ms=ms(median(lat)),
        p99_ms=ms(pct(lat, 99)),
        cpu_cores=sum(r["cpu"] for r in got) / wall,
        server_cores=None
        if store != "postgres" or before[2] is None or after[2] is None
        else (after[2] - before[2]) / wall,
        loopengt_cores=None if before[3] is None or after[3] is None else (after[3] - before[3]) / wall,
        machine_busy=(after[0] - before[0]) / max(after[1] - before[1], 1e-9),
    )


def measure(
    store: str, processes: int, args: argparse.Namespace, *, dsn: str, directory: Path, meter: CpuMeter
) -> Figures:
    """One configuration on a fresh store (new database / new directory)."""
    common = {"processes": processes, "store": store, "per_process": args.runs_per_process}
    common |= {"steps": args.steps, "warmup": args.warmup, "meter": meter}
    tag = f"{store}-{processes}p-{secrets.token_hex(3)}"
    if store == "postgres":
        with fresh_database(dsn) as target:
            if not args.http:
                return run_config(location=target, urls=None, **common)
            with http_servers(target, processes, directory) as (urls, pids):
                return run_config(location=target, urls=urls, server_pids=pids, **common)
    root = directory / tag
    try:
        if not args.http:
            return run_config(location=str(root), urls=None, **common)
        with http_servers(str(root), processes, directory) as (urls, pids):
            return run_config(location=str(root), urls=urls, server_pids=pids, **common)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------ report


def fsync_floor(directory: Path, calls: int = 200) -> float:
    """Median ms of a bare append+fsync in the file store's directory: the disk's mode right now."""
    floor = FsyncFloor(directory)
    try:
        return ms(median([floor.once() for _ in range(calls)]))
    finally:
        floor.close()
        floor.path.unlink(missing_ok=True)


def round_trip_floor(dsn: str, calls: int = 200) -> float:
    """Median ms of one `SELECT 1` round trip to the server: PostgreSQL's floor, as fsync is the file store's."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            conn.execute("SELECT 1").fetchone()
            samples.append(time.perf_counter_ns() - t0)
    return ms(median(samples))


def count_trips(dsn: str, directory: Path, steps: int = 200, warmup: int = 10) -> Trips:
    """Round trips and statements per `Runs.step` on one run in this process, from libpq's protocol trace
    (bench/_pgtrace.py), on a fresh database: what one transition (lock, tail read, append with its
    route decided by a condition, unlock) costs on the wire."""
    from loopengt_core.service.runs import Runs
    from loopengt_core.store import open_store

    trace_dir = directory / f"trace-{secrets.token_hex(3)}"
    trace_dir.mkdir()
    got: list[Trips] = []
    try:
        with fresh_database(dsn) as target, Tracer(trace_dir).installed() as tracer:
            runs = Runs(open_store(target))
            try:
                view = runs.start_run(spec=bench_spec(steps + warmup))
                task = view.tasks[0].task_id
                for _ in range(warmup):
                    task = runs.step(view.run_id, task, AGAIN).tasks[0].task_id
                with tracer.window(steps, got):
                    for _ in range(steps):
                        task = runs.step(view.run_id, task, AGAIN).tasks[0].task_id
                _finish(runs, view.run_id, task)
            finally:
                runs.store.close()
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    return got[0]


def _per_step(cores: float | None, f: Figures) -> str:
    return "" if cores is None else f"{cores / f.per_s * 1e3:.2f}"


def _cpu_ms(f: Figures, http: bool) -> float | None:
    """CPU ms a step of the store's own processes: the loopengt workers (servers with --http) plus, for
    PostgreSQL, the database server; None when a part was not measurable."""
    engine = f.loopengt_cores if http else f.cpu_cores
    if engine is None:
        return None
    if f.store == "postgres":
        if f.server_cores is None:
            return None
        engine += f.server_cores
    return engine / f.per_s * 1e3


def report(figs: list[Figures], counts: list[int], *, http: bool) -> dict[str, Any]:
    by = {(f.store, f.processes): f for f in figs}
    base = {s: by[(s, counts[0])] for s in STORES if (s, counts[0]) in by}
    print(
        f"\n{'processes':>9}{'runs':>6}  {'store':9}{'steps/s':>9}{'median ms':>11}{'p99 ms':>9}"
        f"{f'vs {counts[0]} proc':>12}   CPU ms/step: {'loopengt':>8}{'clients':>9}{'postgres':>9}"
        f"{'machine busy':>14}"
    )
    scaling: dict[str, dict[str, float]] = {s: {} for s in STORES}
    for n in counts:
        for s in STORES:
            f = by.get((s, n))
            if f is None:
                continue
            scale = f.per_s / base[s].per_s
            scaling[s][str(n)] = scale
            engine, clients = (f.loopengt_cores, f.cpu_cores) if http else (f.cpu_cores, None)
            print(
                f"{n:9d}{f.runs:6d}  {s:9}{f.per_s:9,.0f}{f.median_ms:11.2f}{f.p99_ms:9.2f}"
                f"{scale:11.2f}x{'':16}{_per_step(engine, f):>8}{_per_step(clients, f):>9}"
                f"{_per_step(f.server_cores, f):>9}{f.machine_busy:14.0%}"
            )
    print(
        "\npostgres / file at each process count (steps/s ratio > 1: postgres faster; latency ratio < 1: postgres faster)"
    )
    ratios: dict[str, dict[str, float]] = {}
    for n in counts:
        pg, fs = by.get(("postgres", n)), by.get(("file", n))
        if pg is None or fs is None:
            continue
        ratios[str(n)] = {
            "per_s": pg.per_s / fs.per_s,
            "median": pg.median_ms / fs.median_ms,
            "p99": pg.p99_ms / fs.p99_ms,
        }
        r = ratios[str(n)]
        pg_cpu, fs_cpu = _cpu_ms(pg, http), _cpu_ms(fs, http)
        cpu = ""
        if pg_cpu is not None and fs_cpu is not None:
            r |= {"cpu_ms_postgres": pg_cpu, "cpu_ms_file": fs_cpu, "cpu": pg_cpu / fs_cpu}
            cpu = f", CPU ms/step (loopengt + database) {pg_cpu:.2f} / {fs_cpu:.2f} = {r['cpu']:.2f}x"
        print(
            f"  {n} process{'es' if n > 1 else '  '}: steps/s {r['per_s']:.2f}x, median ms {r['median']:.2f}x, "
            f"p99 ms {r['p99']:.2f}x{cpu}"
        )
    return {"scaling": scaling, "postgres_over_file": ratios}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        help="postgresql:// URL of a server where we may CREATE DATABASE (default: $LOOPENGT_TEST_POSTGRES)",
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="process counts")
    parser.add_argument(
        "--steps",
        type=int,
        help="timed steps per configuration, over all its runs (default 2000; --http 1000)",
    )
    parser.add_argument("--runs-per-process", type=int, default=4, help="runs (threads) in each process")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per run before the clock")
    parser.add_argument(
        "--http",
        action="store_true",
        help="N `loopengt serve --transport streamable-http` servers, N client processes",
    )
    parser.add_argument("--store", help="parent of the file stores (kept); default a temp dir here")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.dsn = args.dsn or os.environ.get("LOOPENGT_TEST_POSTGRES", "")
    args.steps = args.steps or (1000 if args.http else 2000)
    if not args.dsn.startswith(("postgresql://", "postgres://")):
        raise SystemExit(
            "give --dsn postgresql://... or set LOOPENGT_TEST_POSTGRES "
            "(here: bash .ci/postgres.sh && . .ci/postgres.env)"
        )
    if min(args.processes) < 1 or args.runs_per_process < 1 or args.warmup < 0:
        raise SystemExit("--processes and --runs-per-process must be >= 1, --warmup >= 0")
    if args.steps < max(args.processes) * args.runs_per_process:
        raise SystemExit("--steps must give every run at least one step")
    return args


def header(args: argparse.Namespace, settings: dict[str, str], *, local: bool, durable: bool) -> None:
    if args.http:
        via = (
            f"HTTP: N `loopengt serve --transport streamable-http` servers, N client processes (one a server) "
            f"of {args.runs_per_process} MCP sessions, one run each"
        )
    else:
        via = f"Runs.step in N processes of {args.runs_per_process} threads, one run each"
    print(
        f"loopengt durable steps/s by process count, {via}; "
        f"{args.steps:,} timed steps a configuration after {args.warmup} warm-up steps a run "
        f"(load avg {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, python {sys.version.split()[0]})"
    )
    print(
        f"PostgreSQL {settings['server_version']} at {_redact(args.dsn)} (a fresh database per configuration): "
        f"fsync={settings['fsync']} synchronous_commit={settings['synchronous_commit']} "
        f"full_page_writes={settings['full_page_writes']}"
    )
    if not durable:
        print(
            "  NOTE: this server does not flush commits to disk (fsync or synchronous_commit off, as the "
            "throwaway .ci/postgres.sh server runs), so its figures are flattering next to the file store, "
            "which fdatasyncs every step. Measure a real server with --dsn."
        )
    if local:
        print(f"  the server runs on this machine: it shares the {os.cpu_count()} CPUs with the workers")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    dsn = args.dsn
    counts = sorted(set(args.processes))
    quiet_logs()
    began = time.monotonic()
    settings = server_settings(dsn)
    host = urlsplit(dsn).hostname or "localhost"
    local = host in ("127.0.0.1", "localhost", "::1") or host.startswith("/")
    durable = settings["fsync"] == "on" and settings["synchronous_commit"] != "off"
    header(args, settings, local=local, durable=durable)
    meter = CpuMeter(postmaster_pid(dsn) if local else None)
    out: dict[str, Any] = {"settings": settings, "durable": durable, "http": args.http, "configs": []}
    figs: list[Figures] = []
    with bench_dir(args.store, ".bench-pgscale-") as directory:
        trips = count_trips(dsn, directory)
        print(
            f"  PostgreSQL round trips per step: {trips.trips_per_step:.2f} ({trips.statements_per_step:.2f} "
            f"statements), counted from libpq's protocol trace over {trips.steps} steps of one run in-process",
            flush=True,
        )
        out["round_trips_per_step"] = trips.trips_per_step
        out["statements_per_step"] = trips.statements_per_step
        disk_before, trip_before = fsync_floor(directory), round_trip_floor(dsn)
        for turn, n in enumerate(counts):
            order = STORES if turn % 2 == 0 else STORES[::-1]  # alternate, so drift hits both stores alike
            for store in order:
                t0 = time.monotonic()
                fig = measure(store, n, args, dsn=dsn, directory=directory, meter=meter)
                figs.append(fig)
                print(
                    f"  {n} process{'es' if n > 1 else ''} x {store}: {fig.per_s:,.0f} steps/s "
                    f"({fig.steps:,} steps in {fig.wall_s:.1f} s; configuration {time.monotonic() - t0:.1f} s)",
                    flush=True,
                )
        disk_after, trip_after = fsync_floor(directory), round_trip_floor(dsn)
    print(
        f"  floors, median before / after: bare append+fsync in the file store's directory "
        f"{disk_before:.2f} / {disk_after:.2f} ms (the disk's mode; see bench/README.md), "
        f"PostgreSQL `SELECT 1` round trip {trip_before:.3f} / {trip_after:.3f} ms"
    )
    out |= report(figs, counts, http=args.http)
    print(
        "\n  CPU ms/step: CPU time over the timed phase divided by the steps, of the loopengt processes (the "
        "workers; with --http the `loopengt serve` servers), of the MCP client processes (--http only) and of "
        "the PostgreSQL server (all its processes: backends, autovacuum, WAL writer...; a server on this machine "
        "only). The CPU ratio adds the database's CPU to loopengt's for PostgreSQL and sets it against the "
        "file store's loopengt CPU (the disk's work is the kernel's, counted in the worker's CPU time). "
        "machine busy: share "
        "of all CPUs busy over the timed phase, everyone's work included (near 100%: the figures measure CPU "
        "contention more than the stores)"
    )
    out["configs"] = [f.as_dict() for f in figs]
    out["fsync_floor_ms"] = {"before": disk_before, "after": disk_after}
    out["round_trip_floor_ms"] = {"before": trip_before, "after": trip_after}
    finish(out, began, args.json)


if __name__ == "__main__":
    main()
