"""Durable steps per second through `Runs.step` (FileStore), beside a bare append+fsync loop on the same disk.

For each N in --steps: one run of a self-looping custom spec gets N submissions of {"next": "again"}. The
bare loop does N appends of a ~300-byte line + os.fsync to an O_APPEND file in the same directory. The two
are interleaved in blocks (--block) so background load on this noisy machine hits both alike; a short
warm-up of each comes first. Figures are ratios against the bare loop of the same command.

    python bench/steps.py                       # N = 1000 and 10000 (10000 skipped if over --budget)
    python bench/steps.py --steps 2000 --profile 2000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import AGAIN, FsyncFloor, bench_dir, drift, finish, loop_spec, median, ms, pct, quiet_logs

from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

WARMUP = 50


@dataclass
class Trace:
    """Samples of one run, in run order (ns)."""

    core: list[int] = field(default_factory=list)  # wall time per Runs.step
    cpu: list[int] = field(default_factory=list)  # this thread's CPU time per Runs.step (no disk wait)
    snap: list[bool] = field(default_factory=list)  # whether that step also wrote snapshot.json
    bare: list[int] = field(default_factory=list)  # wall time per bare append+fsync
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each interleaved block


@dataclass
class Result:
    n: int
    trace: Trace
    events: int  # events in the run's log after the N steps
    log_bytes: int
    snapshot_bytes: int
    snapshot_every: int


class _CountingStore(FileStore):
    """A FileStore that counts snapshots, so the figures can tell snapshot steps apart."""

    snapshots = 0

    def save_snapshot(self, run_id: str, seq: int, state: dict[str, Any]) -> None:
        self.snapshots += 1
        super().save_snapshot(run_id, seq, state)


def _drive(runs: Runs, n: int, floor: FsyncFloor | None, block: int) -> tuple[str, Trace]:
    """Start a run and submit N steps (interleaved with N bare fsyncs when `floor` is given)."""
    view = runs.start_run(spec=loop_spec(n))
    run_id, task = view.run_id, view.tasks[0].task_id
    store = runs.store
    trace = Trace()
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for start in range(0, n, block):
        count = min(block, n - start)
        trace.blocks.append((start, start + count))
        if floor is not None:
            trace.bare.extend(floor.once() for _ in range(count))
        for _ in range(count):
            before = getattr(store, "snapshots", 0)
            c0, t0 = cpu_clock(), clock()
            answer = runs.step(run_id, task, AGAIN)
            trace.core.append(clock() - t0)
            trace.cpu.append(cpu_clock() - c0)
            trace.snap.append(getattr(store, "snapshots", 0) != before)
            task = answer.tasks[0].task_id
    return run_id, trace


def _finish(runs: Runs, run_id: str) -> None:
    """Route to `done` and complete it: the run really worked."""
    answer = runs.step(run_id, runs.get_run(run_id).tasks[0].task_id, {"next": "stop"})
    answer = runs.step(run_id, answer.tasks[0].task_id, {"done": True})
    if answer.status != "completed":
        raise SystemExit(f"bench run {run_id} ended {answer.status}, expected completed: {answer.error}")


def measure(n: int, directory: Path, snapshot_every: int | None, block: int) -> Result:
    store_root = directory / f"store-{n}"
    store = _CountingStore(store_root, snapshot_every=snapshot_every or 100)
    runs = Runs(store)
    store_root.mkdir(parents=True, exist_ok=True)
    floor = FsyncFloor(store_root)
    try:
        warm_id, _ = _drive(runs, WARMUP, floor, block)
        _finish(runs, warm_id)
        run_id, trace = _drive(runs, n, floor, block)
    finally:
        floor.close()
        floor.path.unlink(missing_ok=True)
    run_dir = store_root / "runs" / run_id
    snapshot = run_dir / "snapshot.json"
    result = Result(
        n=n,
        trace=trace,
        events=store.last_seq(run_id),
        log_bytes=(run_dir / "events.jsonl").stat().st_size,
        snapshot_bytes=snapshot.stat().st_size if snapshot.exists() else 0,
        snapshot_every=runs.snapshot_every,
    )
    _finish(runs, run_id)
    store.close()
    return result


def figures(r: Result) -> dict[str, Any]:
    """Every printed figure of one N, for --json (times in ms)."""
    t = r.trace
    plain = [c for c, s in zip(t.core, t.snap, strict=True) if not s]
    snaps = [c for c, s in zip(t.core, t.snap, strict=True) if s]

    def row(values: list[int]) -> dict[str, float]:
        return {
            "per_s": len(values) / (sum(values) / 1e9),
            "median_ms": ms(median(values)),
            "p99_ms": ms(pct(values, 99)),
            "max_ms": ms(max(values)),
            "growth": drift(values),
        }

    return {
        "n": r.n,
        "events": r.events,
        "log_bytes": r.log_bytes,
        "snapshot_bytes": r.snapshot_bytes,
        "snapshot_every": r.snapshot_every,
        "snapshots_written": sum(t.snap),
        "loopengt": row(t.core),
        "fsync": row(t.bare),
        "ratio_median": median(t.core) / median(t.bare),
        "ratio_paired": median([median(t.core[a:b]) / median(t.bare[a:b]) for a, b in t.blocks]),
        "ratio_p99": pct(t.core, 99) / pct(t.bare, 99),
        "ratio_mean": (sum(t.core) / len(t.core)) / (sum(t.bare) / len(t.bare)),
        "cpu_median_ms": ms(median(t.cpu)),
        "cpu_p99_ms": ms(pct(t.cpu, 99)),
        "cpu_growth": drift(t.cpu),
        "snapshot_step_median_ms": ms(median(snaps)) if snaps else None,
        "plain_step_median_ms": ms(median(plain)),
        "growth_goal": 1.2,
        "growth_met": drift(t.core) <= 1.2,
    }


def report(r: Result) -> dict[str, Any]:
    t = r.trace
    f = figures(r)
    per_step = r.events / r.n
    print(
        f"\nN = {r.n:,} steps: {r.events:,} events ({per_step:.1f} a step), log {r.log_bytes / 1e6:.2f} MB "
        f"({r.log_bytes / r.n:,.0f} B a step), snapshot.json {r.snapshot_bytes / 1e3:.1f} kB"
    )
    print(
        f"  snapshot interval: every {r.snapshot_every} events = one snapshot per "
        f"~{r.snapshot_every / per_step:.0f} steps ({f['snapshots_written']} snapshots written)"
    )
    print(f"  {'':22}{'steps/s':>9}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}{'last/first 10%':>16}")
    for label, key in (("loopengt Runs.step", "loopengt"), ("bare append+fsync", "fsync")):
        v = f[key]
        print(
            f"  {label:22}{v['per_s']:9,.0f}{v['median_ms']:11.3f}{v['p99_ms']:9.3f}"
            f"{v['max_ms']:9.2f}{v['growth']:16.2f}"
        )
    print(
        f"  ratio loopengt/fsync: median {f['ratio_median']:.2f}x, "
        f"paired by block {f['ratio_paired']:.2f}x, p99 {f['ratio_p99']:.2f}x, "
        f"mean (= inverse steps/s ratio) {f['ratio_mean']:.2f}x"
    )
    print(
        f"  loopengt CPU per step (thread time, no disk wait): median {f['cpu_median_ms']:.3f} ms, "
        f"p99 {f['cpu_p99_ms']:.3f} ms"
    )
    if f["snapshot_step_median_ms"] is not None:
        print(
            f"  steps that also wrote a snapshot: median {f['snapshot_step_median_ms']:.3f} ms "
            f"vs {f['plain_step_median_ms']:.3f} ms for the others ({f['snapshots_written']} of {r.n})"
        )
    growth, disk = f["loopengt"]["growth"], f["fsync"]["growth"]
    verdict = "ok" if f["growth_met"] else "over the goal"
    print(
        f"  growth, median last 10% / first 10%: loopengt {growth:.2f} (goal <= 1.2: {verdict}); "
        f"the disk's own (bare loop) {disk:.2f}; loopengt CPU {drift(t.cpu):.2f}"
    )
    return f


def profile(n: int, directory: Path, snapshot_every: int | None, top: int = 25) -> None:
    """A separate N-step run under cProfile; top functions by cumulative and by own time."""
    store = FileStore(directory / f"profile-{n}", snapshot_every=snapshot_every or 100)
    runs = Runs(store)
    prof = cProfile.Profile()
    prof.enable()
    _drive(runs, n, None, n)
    prof.disable()
    store.close()
    for key, count in (("cumulative", top), ("tottime", 15)):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(count)
        text = out.getvalue()
        body = text[text.find("   ncalls") :].rstrip()
        print(f"\ncProfile of {n:,} Runs.step calls, by {key} (times inflated by the profiler):\n{body}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000], help="run lengths N")
    parser.add_argument("--store", help="store directory (kept); default a temp dir under the working dir")
    parser.add_argument("--snapshot-every", type=int, help="events between snapshots (default: the store's)")
    parser.add_argument("--block", type=int, default=50, help="interleave fsync/loopengt in blocks of this")
    parser.add_argument(
        "--budget", type=float, default=110.0, help="skip an N projected to end past this many s (0: never)"
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then profile an N-step run")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"sizes": {}, "skipped": {}}
    quiet_logs()
    began = time.monotonic()
    with bench_dir(args.store, ".bench-steps-") as directory:
        print(
            f"loopengt durable steps vs bare append+fsync; store {directory} "
            f"(load avg {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, python {sys.version.split()[0]})"
        )
        per_step_s: float | None = None
        for n in args.steps:
            if per_step_s is not None and args.budget > 0:
                projected = n * per_step_s * 1.2
                spent = time.monotonic() - began
                if spent + projected > args.budget:
                    why = (
                        f"projected ~{projected:.0f} s would pass the --budget of "
                        f"{args.budget:.0f} s ({spent:.0f} s spent); run it with --steps {n} --budget 0"
                    )
                    print(f"\nN = {n:,} skipped: {why}")
                    out["skipped"][str(n)] = why
                    continue
            t0 = time.monotonic()
            result = measure(n, directory, args.snapshot_every, args.block)
            per_step_s = (time.monotonic() - t0) / (n + WARMUP)
            out["sizes"][str(n)] = report(result)
        if args.profile:
            profile(args.profile, directory, args.snapshot_every)
    finish(out, began, args.json)


if __name__ == "__main__":
    main()
