"""The same durable loop in loopengt and in LangGraph: one step repeated N times, 2 KB added each step.

LangGraph 1.x: a `StateGraph` whose one node `work` returns `{"items": [ITEM]}` (a 2 KB string) into a
list with an `operator.add` reducer and loops back to itself through a conditional edge until the list
holds N items; `SqliteSaver` on a file; `stream(..., durability="sync")`, so each step's checkpoint is
committed before the next step starts (sqlite in WAL mode with synchronous=FULL: every commit
fdatasyncs the WAL; two commits a step: the node's writes, then the checkpoint).

loopengt: `Runs.step` on the file store, a self-routing custom spec (bench/_common.py's `loop_spec`),
each step submitting `{"next": "again", "item": ITEM}`; each step is one append + one fdatasync.

Each system runs in its own fresh subprocess (clean peak RSS; neither imports the other) after a 20-step
warm-up on a separate store. The two processes take turns in blocks of --block steps (with a few bare
append+fsync calls between rounds), so the disk's changing mode and other load on the machine hit both
alike. When every run is done, the cold load of each run's latest state is timed in fresh processes,
interleaved across sizes and systems (imports and opening excluded; the OS page cache is warm).

    python bench/compare_langgraph.py                       # N = 100, 200, 1000, 10000
    python bench/compare_langgraph.py --sizes 1000 --budget 30
    python bench/compare_langgraph.py --sizes --profile 5000  # only cProfile loopengt's step (2 KB outputs)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from _common import FsyncFloor, bench_dir, loop_spec, median, pct, quiet_logs

ITEM = "x" * 2048  # the 2 KB string every step adds to the run's state
OUTPUT = {"next": "again", "item": ITEM}  # loopengt's output: the same string, plus the routing field
WARMUP = 20
FLOOR_BLOCK = 10  # bare append+fsync calls after each round of blocks: the disk's mode during the runs
SETTLE_S = 0.02  # after a LangGraph block: let its background write of the last step finish on its turn
COLD_REPEATS = 5
THREAD = {"configurable": {"thread_id": "bench"}}
SYSTEMS = ("loopengt", "langgraph")
LABEL = {"loopengt": "loopengt", "langgraph": "LangGraph"}

GOAL_SPEEDUP = 5.0  # loopengt durable step >= 5x faster than LangGraph at N = 1,000
GOAL_STORAGE = 20.0  # loopengt storage at N = 1,000 <= 1/20 of LangGraph's
GOAL_GROWTH = 1.2  # per-step time, last 10% / first 10% of a 10,000-step run
GOAL_COLD = 2.0  # cold load of a 10,000-step run / a 100-step run


# ------------------------------------------------------------------------------------------ helpers


def _rss_now_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _rss_peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def tree_bytes(path: Path) -> int:
    """Apparent size of every file under `path`."""
    return sum((Path(d) / f).stat().st_size for d, _, files in os.walk(path) for f in files)


def _sqlite_files(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def _sqlite_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in _sqlite_files(db))


class Recorder:
    """Per-step wall and process CPU time (ns); the budget that stops a run."""

    def __init__(self, n: int, seconds: float = 0, max_bytes: float = 0) -> None:
        self.n, self.seconds, self.max_bytes = n, seconds, max_bytes
        self.times: list[int] = []
        self.cpu: list[int] = []  # process CPU time (all threads: LangGraph writes from a background thread)
        self.stopped: str | None = None

    def over_budget(self, size: Callable[[], int]) -> bool:
        """Whether the run must stop before its next step: its own step time or its files passed the budget."""
        step, spent = len(self.times), sum(self.times) / 1e9
        if step >= self.n:
            return False
        if self.seconds > 0 and spent > self.seconds:
            self.stopped = f"time budget: {spent:.0f} s of steps after {step:,} of {self.n:,} (--budget {self.seconds:.0f})"
        elif self.max_bytes > 0 and step % 10 == 0 and (used := size()) > self.max_bytes:
            self.stopped = (
                f"storage budget: {used / 1e9:.2f} GB on disk after {step:,} of {self.n:,} steps "
                f"(--max-bytes {self.max_bytes / 1e9:.1f} GB)"
            )
        return self.stopped is not None


# ------------------------------------------------------------------------------------------ loopengt


def _loopengt_steps(
    runs: Any, rec: Recorder, size: Callable[[], int], info: dict[str, Any]
) -> Iterator[None]:
    """Start a run, then one durable `Runs.step` per iteration until N steps or the budget."""
    view = runs.start_run(spec=loop_spec(rec.n))
    run_id, task = view.run_id, view.tasks[0].task_id
    info["run_id"] = run_id
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    while len(rec.times) < rec.n and not rec.over_budget(size):
        c0, t0 = cpu_clock(), clock()
        answer = runs.step(run_id, task, OUTPUT)
        rec.times.append(clock() - t0)
        rec.cpu.append(cpu_clock() - c0)
        task = answer.tasks[0].task_id
        yield


class LoopengtRun:
    def __init__(self, n: int, directory: Path, seconds: float, max_bytes: float) -> None:
        from loopengt_core.service.runs import Runs
        from loopengt_core.store.files import FileStore

        quiet_logs()
        warm = FileStore(directory / "warmup")
        for _ in _loopengt_steps(Runs(warm), Recorder(WARMUP), lambda: 0, {}):
            pass
        warm.close()
        shutil.rmtree(directory / "warmup")
        self.root = directory / "store"
        self.store = FileStore(self.root)
        self.rec = Recorder(n, seconds, max_bytes)
        self.info: dict[str, Any] = {"where": str(self.root)}
        self.steps = _loopengt_steps(Runs(self.store), self.rec, lambda: tree_bytes(self.root), self.info)

    def settle(self) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        self.steps.close()
        live = tree_bytes(self.root)
        self.store.close()
        return {**self.info, "bytes_live": live, "bytes": tree_bytes(self.root)}


def load_loopengt(where: str, run_id: str, steps: int, *, profiled: bool = False) -> dict[str, Any]:
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore

    quiet_logs()
    runs = Runs(FileStore(where))
    prof = cProfile.Profile() if profiled else None
    t0 = time.perf_counter_ns()
    if prof is not None:
        prof.enable()
    view = runs.get_run(run_id)
    if prof is not None:
        prof.disable()
    elapsed = time.perf_counter_ns() - t0
    done = next(s.attempts for s in view.steps if s.name == "work") - 1  # the open task is one more attempt
    if done != steps:
        raise SystemExit(f"loopengt cold load: {done} steps in the loaded state, expected {steps}")
    if prof is not None:
        return {"load_ns": elapsed, "cumulative": _rows(pstats.Stats(prof), 1, 3, 20)}
    return {"load_ns": elapsed}


# ------------------------------------------------------------------------------------------ LangGraph


def _langgraph_builder(n: int) -> Any:
    import operator
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph

    # functional form: evaluated now (this module's annotations are strings, and these names are local)
    State = TypedDict("State", {"items": Annotated[list[str], operator.add]})  # noqa: UP013

    def work(state: Any) -> dict[str, list[str]]:
        return {"items": [ITEM]}  # the reducer appends it: only the new item is returned

    def route(state: Any) -> str:
        return "work" if len(state["items"]) < n else END

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_conditional_edges("work", route, ["work", END])
    return builder


def _langgraph_steps(graph: Any, rec: Recorder, size: Callable[[], int]) -> Iterator[None]:
    """One durable step per `updates` chunk of `stream(durability="sync")`: time from asking to getting it."""
    config = {**THREAD, "recursion_limit": rec.n + 10}
    stream = graph.stream({"items": []}, config, durability="sync", stream_mode="updates")
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    try:
        while not rec.over_budget(size):
            c0, t0 = cpu_clock(), clock()
            try:
                next(stream)
            except StopIteration:
                return
            rec.times.append(clock() - t0)
            rec.cpu.append(cpu_clock() - c0)
            yield
    finally:
        stream.close()


class LangGraphRun:
    def __init__(self, n: int, directory: Path, seconds: float, max_bytes: float) -> None:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        warm_db = directory / "warmup.sqlite"
        with sqlite3.connect(warm_db, check_same_thread=False) as warm:
            graph = _langgraph_builder(WARMUP).compile(checkpointer=SqliteSaver(warm))
            for _ in _langgraph_steps(graph, Recorder(WARMUP), lambda: 0):
                pass
        warm.close()
        for path in _sqlite_files(warm_db):
            path.unlink()
        self.db = directory / "langgraph.sqlite"
        self.conn = sqlite3.connect(self.db, check_same_thread=False)
        graph = _langgraph_builder(n).compile(checkpointer=SqliteSaver(self.conn))
        self.rec = Recorder(n, seconds, max_bytes)
        self.steps = _langgraph_steps(graph, self.rec, lambda: _sqlite_bytes(self.db))

    def settle(self) -> None:
        time.sleep(SETTLE_S)  # the last step's writes may still be in LangGraph's background thread

    def finish(self) -> dict[str, Any]:
        self.steps.close()
        pragmas = {p: self.conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "synchronous")}
        live = _sqlite_bytes(self.db)
        self.conn.close()
        return {"where": str(self.db), "bytes_live": live, "bytes": _sqlite_bytes(self.db), "sqlite": pragmas}


def load_langgraph(where: str, steps: int) -> dict[str, Any]:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(where, check_same_thread=False)
    graph = _langgraph_builder(steps).compile(checkpointer=SqliteSaver(conn))
    t0 = time.perf_counter_ns()
    snapshot = graph.get_state(THREAD)
    elapsed = time.perf_counter_ns() - t0
    conn.close()
    if len(snapshot.values["items"]) != steps:
        raise SystemExit(f"LangGraph cold load: {len(snapshot.values['items'])} items, expected {steps}")
    return {"load_ns": elapsed}


# ------------------------------------------------------------------------------------------ workers


def serve_worker(
    system: str, n: int, directory: Path, *, seconds: float, max_bytes: float, out: Path
) -> None:
    """A measured run driven over stdin: `go K` runs up to K steps and answers `ok STEPS DONE`; `end` ends."""
    kind = LoopengtRun if system == "loopengt" else LangGraphRun
    run = kind(n, directory, seconds, max_bytes)
    rss_base = _rss_now_kb()
    answer = sys.__stdout__
    assert answer is not None
    sys.stdout = sys.stderr  # only the protocol goes to the real stdout
    print("ready", file=answer, flush=True)
    finished = False
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["end"]:
            break
        for _ in range(int(words[1])):
            if next(run.steps, StopIteration) is StopIteration:
                finished = True
                break
        run.settle()
        finished = finished or len(run.rec.times) >= n or run.rec.stopped is not None
        print(f"ok {len(run.rec.times)} {int(finished)}", file=answer, flush=True)
    if run.rec.stopped is None:
        for _ in run.steps:  # let a finished graph end normally (its last checkpoint); nothing more is timed
            pass
    result = run.finish()
    result.update(
        times_ns=run.rec.times,
        cpu_ns=run.rec.cpu,
        stopped=run.rec.stopped,
        rss_base_kb=rss_base,
        rss_peak_kb=_rss_peak_kb(),
    )
    out.write_text(json.dumps(result))


class Worker:
    """The driver's end of one worker process."""

    def __init__(
        self, system: str, n: int, directory: Path, args: argparse.Namespace, max_bytes: float
    ) -> None:
        self.system, self.out = system, directory / "result.json"
        self.err_path = directory / "stderr.txt"
        self.err: IO[str] = self.err_path.open("w")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            system,
            "--n",
            str(n),
            "--dir",
            str(directory),
            "--budget",
            str(args.budget),
            "--max-bytes",
            str(max_bytes),
            "--out",
            str(self.out),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True
        )
        self.done = False
        self.steps = 0

    def _line(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line
        self.err.flush()
        raise SystemExit(f"{self.system} worker ended early:\n{self.err_path.read_text()[-3000:]}")

    def ready(self) -> None:
        self._line("ready")

    def go(self, count: int) -> tuple[int, int]:
        """Run up to `count` steps; the (start, end) step indices run."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"go {count}\n")
        self.proc.stdin.flush()
        _, steps, done = self._line("ok ").split()
        start, self.steps, self.done = self.steps, int(steps), done == "1"
        return start, self.steps

    def result(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("end\n")
        self.proc.stdin.close()
        code = self.proc.wait(timeout=600)
        self.err.close()
        if code != 0:
            raise SystemExit(f"{self.system} worker failed ({code}):\n{self.err_path.read_text()[-3000:]}")
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data


def _load_once(
    system: str, run: dict[str, Any], directory: Path, *, profiled: bool = False
) -> dict[str, Any]:
    """One cold load in a fresh interpreter: `load_ns`, the time of the load call alone."""
    out = directory / f"load-{system}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        f"load-{system}",
        "--n",
        str(run["steps"]),
    ]
    cmd += ["--where", run["where"], "--out", str(out)]
    if system == "loopengt":
        cmd += ["--run-id", run["run_id"]]
    if profiled:
        cmd.append("--profile")
    proc = subprocess.run(cmd, check=False, timeout=600, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cold load of {system} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data


# ------------------------------------------------------------------------------------------ driver


def run_pair(n: int, directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both systems at N, in their own processes, taking turns in blocks; a bare fsync block per round."""
    free = shutil.disk_usage(directory).free
    max_bytes = min(args.max_bytes, free * 0.4) if args.max_bytes > 0 else 0
    workers = {}
    for system in SYSTEMS:
        work = directory / f"{system}-{n}"
        work.mkdir()
        workers[system] = Worker(system, n, work, args, max_bytes)
    for w in workers.values():
        w.ready()
    floor = FsyncFloor(directory)
    fsync: list[int] = []
    rounds: list[dict[str, tuple[int, int]]] = []
    began = time.monotonic()
    while not all(w.done for w in workers.values()):
        order = SYSTEMS if len(rounds) % 2 == 0 else SYSTEMS[::-1]  # alternate who goes first
        rounds.append({s: workers[s].go(args.block) for s in order if not workers[s].done})
        fsync.extend(floor.once() for _ in range(FLOOR_BLOCK))
    floor.close()
    floor.path.unlink()
    wall = time.monotonic() - began
    raw = {s: w.result() for s, w in workers.items()}
    for s in SYSTEMS:
        raw[s]["steps"] = len(raw[s]["times_ns"])
        if raw[s]["stopped"]:
            print(f"  {LABEL[s]} at N = {n:,} stopped early: {raw[s]['stopped']}", flush=True)
    # paired by block: LangGraph's block median over loopengt's, for rounds where both ran a whole block
    paired = [
        median(raw["langgraph"]["times_ns"][slice(*r["langgraph"])])
        / median(raw["loopengt"]["times_ns"][slice(*r["loopengt"])])
        for r in rounds
        if all(s in r and r[s][1] - r[s][0] == args.block for s in SYSTEMS)
    ]
    return {"raw": raw, "fsync_ns": fsync, "paired": paired, "wall_s": wall}


def summarise(system: str, n: int, raw: dict[str, Any], loads: list[int]) -> dict[str, Any]:
    times, cpu = raw["times_ns"], raw["cpu_ns"]
    tenth = max(1, len(times) // 10)
    first, last = median(times[:tenth]) / 1e6, median(times[-tenth:]) / 1e6
    return {
        "system": system,
        "n": n,
        "steps": len(times),
        "stopped": raw["stopped"],
        "median_ms": median(times) / 1e6,
        "mean_ms": sum(times) / len(times) / 1e6,
        "p99_ms": pct(times, 99) / 1e6,
        "first10_ms": first,
        "last10_ms": last,
        "growth": last / first,
        "cpu_median_ms": median(cpu) / 1e6,
        "cpu_growth": median(cpu[-tenth:]) / median(cpu[:tenth]),
        "steps_s": sum(times) / 1e9,
        "bytes": raw["bytes"],
        "bytes_live": raw["bytes_live"],
        "rss_peak_mb": raw["rss_peak_kb"] / 1024,
        "rss_delta_mb": max(0, raw["rss_peak_kb"] - raw["rss_base_kb"]) / 1024,
        "cold_load_ms": median(loads) / 1e6,
        "cold_loads_ms": [x / 1e6 for x in loads],
        "sqlite": raw.get("sqlite"),
        "_times_ns": times,
    }


def ratios(pair: dict[str, dict[str, Any]], paired: list[float]) -> dict[str, Any]:
    """loopengt against LangGraph; when LangGraph stopped early, speed is compared over the same steps."""
    lo, lg = pair["loopengt"], pair["langgraph"]
    k = lg["steps"]
    lo_times = lo["_times_ns"][:k]
    lo_median = median(lo_times) / 1e6
    lo_mean = sum(lo_times) / len(lo_times) / 1e6
    return {
        "n": lo["n"],
        "same_steps": k,
        "speedup_median": lg["median_ms"]
        / lo_median,  # LangGraph time / loopengt time: > 1 = loopengt faster
        "speedup_mean": lg["mean_ms"] / lo_mean,
        "speedup_paired": median(paired) if paired else None,  # median over blocks run back to back
        "blocks_paired": len(paired),
        "step_median": lo_median / lg["median_ms"],  # loopengt/LangGraph
        "step_mean": lo_mean / lg["mean_ms"],
        "storage": lo["bytes"] / lg["bytes"],
        "rss_peak": lo["rss_peak_mb"] / lg["rss_peak_mb"],
        "rss_delta": lo["rss_delta_mb"] / lg["rss_delta_mb"] if lg["rss_delta_mb"] else None,
        "cold_load": lo["cold_load_ms"] / lg["cold_load_ms"],
        "langgraph_capped": k < lg["n"],
    }


def measure(sizes: list[int], directory: Path, args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    runs: dict[int, dict[str, Any]] = {}
    for n in sizes:
        t0 = time.monotonic()
        runs[n] = run_pair(n, directory, args)
        print(f"  N = {n:,}: both runs in {time.monotonic() - t0:.0f} s", flush=True)
    loads: dict[int, dict[str, list[int]]] = {n: {s: [] for s in SYSTEMS} for n in sizes}
    t0 = time.monotonic()
    for repeat in range(COLD_REPEATS):  # interleaved, so a busy moment does not land on one size or system
        for n in sizes if repeat % 2 == 0 else sizes[::-1]:
            for system in SYSTEMS:
                loads[n][system].append(_load_once(system, runs[n]["raw"][system], directory)["load_ns"])
    print(f"  cold loads ({COLD_REPEATS} of each) in {time.monotonic() - t0:.0f} s", flush=True)
    results: dict[int, dict[str, Any]] = {}
    for n in sizes:
        for system in SYSTEMS:
            shutil.rmtree(directory / f"{system}-{n}", ignore_errors=True)
        fs = runs[n]["fsync_ns"]
        pair = {s: summarise(s, n, runs[n]["raw"][s], loads[n][s]) for s in SYSTEMS}
        results[n] = {
            **pair,
            "ratios": ratios(pair, runs[n]["paired"]),
            "fsync": {"median_ms": median(fs) / 1e6, "p90_ms": pct(fs, 90) / 1e6, "samples": len(fs)},
            "wall_s": runs[n]["wall_s"],
        }
    return results


def goals(results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, target: str, met: bool, note: str = "") -> None:
        out.append({"goal": name, "value": value, "target": target, "met": met, "note": note})

    if 1000 in results:
        r = results[1000]["ratios"]
        paired = f"{r['speedup_paired']:.2f}x" if r["speedup_paired"] is not None else "n/a"
        add(
            "loopengt durable step >= 5x faster than LangGraph's at N=1,000 (LangGraph median / loopengt median)",
            r["speedup_median"],
            f">= {GOAL_SPEEDUP:g}x",
            r["speedup_median"] >= GOAL_SPEEDUP,
            f"by means (total step time) {r['speedup_mean']:.2f}x; paired by block {paired}; "
            f"bare fsync median during the runs {results[1000]['fsync']['median_ms']:.3f} ms",
        )
        add(
            "loopengt storage at N=1,000 / LangGraph's",
            r["storage"],
            f"<= 1/{GOAL_STORAGE:g} ({1 / GOAL_STORAGE:.3f})",
            r["storage"] <= 1 / GOAL_STORAGE,
            f"{results[1000]['loopengt']['bytes'] / 1e6:.1f} MB vs {results[1000]['langgraph']['bytes'] / 1e6:.0f} MB",
        )
    big = max(results) if results else 0
    if big >= 10000:
        lo, lg = results[big]["loopengt"], results[big]["langgraph"]
        add(
            f"loopengt per-step time, last 10% / first 10% of a {big:,}-step run",
            lo["growth"],
            f"<= {GOAL_GROWTH:g}",
            lo["growth"] <= GOAL_GROWTH and lo["steps"] == big,
            f"over {lo['steps']:,} steps; {lo['first10_ms']:.3f} -> {lo['last10_ms']:.3f} ms; loopengt CPU time's "
            f"{lo['cpu_growth']:.2f}; LangGraph's {lg['growth']:.2f} over {lg['steps']:,} steps",
        )
        small = min(results)
        if small <= 100:
            cold = lo["cold_load_ms"] / results[small]["loopengt"]["cold_load_ms"]
            add(
                f"loopengt cold load, {big:,}-step run / {small:,}-step run",
                cold,
                f"<= {GOAL_COLD:g}",
                cold <= GOAL_COLD,
                f"{lo['cold_load_ms']:.2f} ms vs {results[small]['loopengt']['cold_load_ms']:.2f} ms "
                f"(medians of {COLD_REPEATS} fresh processes)",
            )
    return out


def report(results: dict[int, dict[str, Any]]) -> None:
    head = (
        f"  {'':11}{'steps':>7}{'median ms':>10}{'mean ms':>9}{'first10%':>9}{'last10%':>9}{'last/first':>11}"
        f"{'CPU ms':>8}{'disk MB':>10}{'peak RSS MB':>12}{'+run MB':>8}{'cold load ms':>13}"
    )
    for n, pair in results.items():
        fs = pair["fsync"]
        print(
            f"\nN = {n:,} (bare fsync during the runs: median {fs['median_ms']:.3f} ms, p90 {fs['p90_ms']:.3f} ms)"
        )
        print(head)
        for system in SYSTEMS:
            s = pair[system]
            print(
                f"  {LABEL[system]:11}{s['steps']:7,}{s['median_ms']:10.3f}{s['mean_ms']:9.3f}{s['first10_ms']:9.3f}"
                f"{s['last10_ms']:9.3f}{s['growth']:11.2f}{s['cpu_median_ms']:8.3f}{s['bytes'] / 1e6:10.2f}"
                f"{s['rss_peak_mb']:12.1f}{s['rss_delta_mb']:8.1f}{s['cold_load_ms']:13.2f}"
            )
        r = pair["ratios"]
        same = f" (speed over the first {r['same_steps']:,} steps of both)" if r["langgraph_capped"] else ""
        rss_delta = f"{r['rss_delta']:.2f}" if r["rss_delta"] is not None else "n/a"
        paired = f"{r['speedup_paired']:.2f}x" if r["speedup_paired"] is not None else "n/a"
        print(
            f"  loopengt/LangGraph: step median {r['step_median']:.3f} (loopengt {r['speedup_median']:.2f}x faster; "
            f"paired by block {paired}), mean {r['step_mean']:.3f} ({r['speedup_mean']:.2f}x){same}; "
            f"disk {r['storage']:.4f} (1/{1 / r['storage']:.0f}); peak RSS {r['rss_peak']:.2f}, +run {rss_delta}; "
            f"cold load {r['cold_load']:.3f}"
        )
        for system in SYSTEMS:
            if pair[system]["stopped"]:
                print(
                    f"  {LABEL[system]} stopped early: {pair[system]['stopped']}; "
                    f"its figures are over {pair[system]['steps']:,} steps"
                )
    sqlite = next(iter(results.values()))["langgraph"]["sqlite"]
    print(
        f"\nLangGraph's sqlite: journal_mode={sqlite['journal_mode']}, synchronous={sqlite['synchronous']} (2 = FULL)"
    )
    print("\nGoals:")
    for g in goals(results):
        verdict = "met" if g["met"] else "MISSED"
        note = f"  ({g['note']})" if g["note"] else ""
        print(f"  {g['goal']}: {g['value']:.3f}, goal {g['target']}: {verdict}{note}")


# ------------------------------------------------------------------------------------------ profile


def _rows(stats: pstats.Stats, steps: int, key: int, count: int) -> list[dict[str, Any]]:
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][key], reverse=True)[:count]  # type: ignore[attr-defined]
    return [
        {
            "function": f"{Path(file).name}:{line}({func})" if line else func,
            "calls": nc,
            "own_s": tt,
            "cumulative_s": ct,
            "cumulative_ms_per_step": ct * 1e3 / steps,
        }
        for (file, line, func), (_cc, nc, tt, ct, _callers) in entries
    ]


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"  {'cumulative s':>12}{'ms/step':>9}{'own s':>8}{'calls':>9}  function")
    for r in rows:
        print(
            f"  {r['cumulative_s']:12.3f}{r['cumulative_ms_per_step']:9.3f}{r['own_s']:8.3f}{r['calls']:9}  {r['function']}"
        )


def profile(n: int, directory: Path, top: int = 25) -> dict[str, Any]:
    """loopengt's step with 2 KB outputs under cProfile: top functions by cumulative and by own time over
    the whole run, and the functions whose time per step grew most from the first 10% to the last 10%."""
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore

    quiet_logs()
    store = FileStore(directory / f"profile-{n}")
    runs = Runs(store)
    view = runs.start_run(spec=loop_spec(n))
    run_id, task = view.run_id, view.tasks[0].task_id
    tenth = max(1, n // 10)
    parts = [cProfile.Profile() for _ in range(3)]  # first 10%, middle, last 10%
    began = time.perf_counter()
    for step in range(n):
        prof = parts[0] if step < tenth else parts[2] if step >= n - tenth else parts[1]
        prof.enable()
        task = runs.step(run_id, task, OUTPUT).tasks[0].task_id
        prof.disable()
    elapsed = time.perf_counter() - began
    store.close()
    cold = _load_once(
        "loopengt",
        {"steps": n, "where": str(directory / f"profile-{n}"), "run_id": run_id},
        directory,
        profiled=True,
    )
    whole = pstats.Stats(parts[0])
    whole.add(parts[1], parts[2])
    first, last = pstats.Stats(parts[0]), pstats.Stats(parts[2])
    out: dict[str, Any] = {
        "n": n,
        "elapsed_s": elapsed,
        "cumulative": _rows(whole, n, 3, top),
        "own": _rows(whole, n, 2, 15),
        "cold_load_ms": cold["load_ns"] / 1e6,
        "cold_load": cold["cumulative"],
    }
    firsts = {k: v[3] / tenth for k, v in first.stats.items()}  # type: ignore[attr-defined]
    grew = sorted(
        ((k, firsts.get(k, 0.0), v[3] / tenth) for k, v in last.stats.items()),  # type: ignore[attr-defined]
        key=lambda item: item[2] - item[1],
        reverse=True,
    )[:15]
    out["growth"] = [
        {
            "function": f"{Path(file).name}:{line}({func})" if line else func,
            "first_ms_per_step": a * 1e3,
            "last_ms_per_step": b * 1e3,
        }
        for (file, line, func), a, b in grew
    ]
    _print_rows(
        f"cProfile of {n:,} loopengt Runs.step calls (2 KB outputs), top by cumulative time "
        f"(all times inflated by the profiler; {elapsed:.1f} s profiled):",
        out["cumulative"],
    )
    _print_rows("top by own time:", out["own"])
    print(f"\nwhat grew from the first {tenth:,} steps to the last {tenth:,} (cumulative ms per step):")
    print(f"  {'first':>8}{'last':>8}  function")
    for g in out["growth"]:
        print(f"  {g['first_ms_per_step']:8.3f}{g['last_ms_per_step']:8.3f}  {g['function']}")
    _print_rows(
        f"cold load of that run ({n:,} steps) in a fresh process, `get_run` under cProfile "
        f"({out['cold_load_ms']:.1f} ms with the profiler); ms/step column = ms of the load:",
        out["cold_load"],
    )
    return out


# ------------------------------------------------------------------------------------------ main


def run_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=[*SYSTEMS, *(f"load-{s}" for s in SYSTEMS)])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--dir")
    parser.add_argument("--where")
    parser.add_argument("--run-id")
    parser.add_argument("--budget", type=float, default=0)
    parser.add_argument("--max-bytes", type=float, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", action="store_true", help="cProfile the cold load (loopengt)")
    a = parser.parse_args(argv)
    if a.kind in SYSTEMS:
        serve_worker(a.kind, a.n, Path(a.dir), seconds=a.budget, max_bytes=a.max_bytes, out=Path(a.out))
        return
    if a.kind == "load-loopengt":
        result = load_loopengt(a.where, a.run_id, a.n, profiled=a.profile)
    else:
        result = load_langgraph(a.where, a.n)
    Path(a.out).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        run_worker(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[100, 200, 1000, 10000],
        help="run lengths N (none: only --profile)",
    )
    parser.add_argument(
        "--block", type=int, default=50, help="steps a system runs before the other takes its turn"
    )
    parser.add_argument(
        "--budget", type=float, default=60.0, help="stop a run after this many s of its steps (0: never)"
    )
    parser.add_argument(
        "--max-bytes",
        type=float,
        default=3e9,
        help="stop a run past this many bytes on disk (at most 40%% of free)",
    )
    parser.add_argument("--store", help="directory for the stores (kept); default a temp dir here")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then cProfile N loopengt steps")
    parser.add_argument("--json", help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    began = time.monotonic()
    results: dict[int, dict[str, Any]] = {}
    prof = None
    with bench_dir(args.store, ".bench-compare-") as directory:
        print(
            f"loopengt vs LangGraph, one step x N adding 2 KB, durable every step; store {directory} "
            f"(load avg {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, python {sys.version.split()[0]})",
            flush=True,
        )
        if args.sizes:
            results = measure(sorted(set(args.sizes)), directory, args)
            report(results)
        if args.profile:
            prof = profile(args.profile, directory)
    if args.json:
        sizes = {
            str(n): {
                k: {x: y for x, y in v.items() if not x.startswith("_")} if k in SYSTEMS else v
                for k, v in r.items()
            }
            for n, r in results.items()
        }
        Path(args.json).write_text(
            json.dumps(
                {
                    "sizes": sizes,
                    "goals": goals(results),
                    "profile": prof,
                    "block": args.block,
                    "budget_s": args.budget,
                    "max_bytes": args.max_bytes,
                    "cold_repeats": COLD_REPEATS,
                    "load_avg": os.getloadavg(),
                    "elapsed_s": time.monotonic() - began,
                },
                indent=1,
            )
        )
    print(f"\ntotal {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
