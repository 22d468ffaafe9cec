"""Bytes on disk per step for 2 KB outputs, against the output's size, and step time against a base commit.

One run of the self-looping spec (bench/_common.py) gets N submissions of a ~2 KB output
`{"next": "again", "text": "..."}` through `Runs.step` on a FileStore. The figures: how much the run's
directory (events.jsonl, snapshot, indexes) grew per step, over the output's JSON size (issue 19's goal:
<= 2x); and the median step time of this tree over that of `--base` (the same code path, the same
workload, in rounds that alternate the two trees so background load hits both alike). Each measurement
runs in its own interpreter with the tree it measures first on sys.path.

    python bench/bytes_per_step.py                          # N = 1000, 3 rounds, base 8990583
    python bench/bytes_per_step.py --steps 300 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE = "8990583"  # the commit issue 19's output work started from
WARMUP = 50
OUT = HERE / "out"  # ignored by git; on the same disk as the repository


def _output(size: int) -> dict[str, Any]:
    """A routing output whose compact JSON is `size` bytes."""
    bare = len(json.dumps({"next": "again", "text": ""}, separators=(",", ":")))
    return {"next": "again", "text": "x" * max(size - bare, 0)}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class _JsonMeter:
    """Counts what json.dumps / json.loads do while installed: calls, text bytes and time (a profile of the
    JSON work alone: every module here calls them through the json module, so patching it sees them all)."""

    def __init__(self) -> None:
        self.counts = {name: [0, 0, 0] for name in ("dumps", "loads")}  # calls, bytes, ns
        self.real = {name: getattr(json, name) for name in self.counts}

    def _wrap(self, name: str) -> Any:
        real, count = self.real[name], self.counts[name]

        def measured(value: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            result = real(value, *args, **kwargs)
            count[2] += time.perf_counter_ns() - t0
            count[0] += 1
            count[1] += len(result if name == "dumps" else value)
            return result

        return measured

    def __enter__(self) -> _JsonMeter:
        for name in self.counts:
            setattr(json, name, self._wrap(name))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, real in self.real.items():
            setattr(json, name, real)

    def per_step(self, steps: int) -> dict[str, dict[str, float]]:
        return {
            f"json.{name}": {
                "per_step": c / steps,
                "bytes_per_step": b / steps,
                "ms_per_step": ns / 1e6 / steps,
            }
            for name, (c, b, ns) in self.counts.items()
        }


def _materialise_costs(runs: Any, run_id: str, calls: int = 200) -> dict[str, float]:
    """A task's input put back together (µs a call): from the outputs the fold holds, as the code does, or
    by reading the referred event through the store (`events(after=, limit=1)`), the other way."""
    try:
        from loopengt_core.model.events import TaskIssued, materialised
    except ImportError:
        try:  # a tree from before the layout of issue 21
            from loopengt_core.events import TaskIssued, materialised  # type: ignore[no-redef]
        except ImportError:  # a tree from before outputs were referred to
            return {}
    referring = [e for e in runs.store.events(run_id) if isinstance(e, TaskIssued) and e.input_refs]
    if not referring:  # a tree whose tasks' inputs hold no references
        return {}
    issued = referring[-1]
    assert issued.input is not None
    assert issued.input_refs is not None
    steps = runs.kernel.read(run_id).state.steps
    held = {s.output_seq: s.output for s in steps.values() if s.output_seq is not None}

    def read(seq: int) -> Any:
        return runs.store.events(run_id, after=seq - 1, limit=1)[0].output

    out = {}
    for name, output_at in (("from_the_fold", held.__getitem__), ("read_by_seq", read)):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            materialised(issued.input, issued.input_refs, output_at)
        out[name] = (time.perf_counter_ns() - t0) / calls / 1e3
    return out


def worker(steps: int, size: int, profiled: bool = False) -> dict[str, Any]:
    """Measure in this interpreter (the tree first on sys.path is the one measured)."""
    sys.path.insert(0, str(HERE))
    from _common import loop_spec, quiet_logs

    import loopengt_core
    from loopengt_core.store.files import FileStore

    try:
        from loopengt_core.service.runs import Runs
    except ImportError:  # a tree from before the layout of issue 21
        from loopengt_core.runs import Runs  # type: ignore[no-redef]

    quiet_logs()
    output = _output(size)
    with tempfile.TemporaryDirectory(prefix="bytes-", dir=OUT) as tmp:
        store = FileStore(Path(tmp) / "store")
        runs = Runs(store)
        times: list[int] = []
        cpu: list[int] = []
        meter = _JsonMeter()
        for n, keep in ((WARMUP, False), (steps, True)):
            view = runs.start_run(spec=loop_spec(n))
            run_id, task = view.run_id, view.tasks[0].task_id
            run_dir = Path(tmp) / "store" / "runs" / run_id
            before = _dir_bytes(run_dir)
            log_before = (run_dir / "events.jsonl").stat().st_size
            if keep and profiled:
                meter.__enter__()
            for _ in range(n):
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                answer = runs.step(run_id, task, output)
                took, used = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
                if keep:
                    times.append(took)
                    cpu.append(used)
                task = answer.tasks[0].task_id
            meter.__exit__()
            if keep:
                materialise = _materialise_costs(runs, run_id)
            grown, log_grown = (
                _dir_bytes(run_dir) - before,
                (run_dir / "events.jsonl").stat().st_size - log_before,
            )
        store.close()
    return {
        "tree": str(Path(loopengt_core.__file__).resolve().parent.parent),
        "payload_bytes": len(json.dumps(output, separators=(",", ":"))),
        "steps": steps,
        "disk_bytes_per_step": grown / steps,
        "log_bytes_per_step": log_grown / steps,
        "step_ms_median": statistics.median(times) / 1e6,
        "step_ms_mean": statistics.fmean(times) / 1e6,
        "cpu_ms_median": statistics.median(cpu) / 1e6,
        "json": meter.per_step(steps) if profiled else {},
        "materialise_us": materialise,
    }


def _checkout(commit: str) -> Path:
    path = OUT / f"base-{commit[:7]}"
    if not (path / "loopengt_core").is_dir():
        path.parent.mkdir(exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--force", str(path), commit], cwd=ROOT, check=True
        )
    return path


def _measure(tree: Path, steps: int, size: int, profiled: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(HERE)])}
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "bytes_per_step.py"),
            "--worker",
            "--steps",
            str(steps),
            "--size",
            str(size),
            *(["--profile"] if profiled else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["tree"]) != tree.resolve():
        raise SystemExit(f"measured {result['tree']}, not {tree}: the tree is not first on sys.path")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2048, help="the output's JSON size in bytes")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of this tree and the base")
    parser.add_argument("--base", default=BASE, help="the commit step time is compared with")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the profiled run of each tree (json calls per step)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.steps, args.size, args.profile)))
        return
    began = time.monotonic()
    base = _checkout(args.base)
    sides: dict[str, list[dict[str, Any]]] = {"this": [], "base": []}
    for i in range(args.rounds):
        for name, tree in (
            (("this", ROOT), ("base", base)) if i % 2 == 0 else (("base", base), ("this", ROOT))
        ):
            sides[name].append(_measure(tree, args.steps, args.size))
    out: dict[str, Any] = {
        "steps": args.steps,
        "rounds": args.rounds,
        "base_commit": args.base,
        "sides": sides,
    }
    payload = sides["this"][0]["payload_bytes"]
    print(f"{args.steps} steps of a {payload}-byte output, {args.rounds} rounds, this tree vs {args.base}:")
    for name, results in sides.items():
        disk = statistics.median(r["disk_bytes_per_step"] for r in results)
        log = statistics.median(r["log_bytes_per_step"] for r in results)
        step = statistics.median(r["step_ms_median"] for r in results)
        cpu = statistics.median(r["cpu_ms_median"] for r in results)
        out[name] = {
            "disk_bytes_per_step": disk,
            "log_bytes_per_step": log,
            "step_ms_median": step,
            "cpu_ms_median": cpu,
        }
        print(
            f"  {name:<4}  disk {disk:7.0f} B/step = {disk / payload:.2f}x the output  "
            f"(log {log:.0f} B = {log / payload:.2f}x)   step median {step:.3f} ms, CPU {cpu:.3f} ms"
        )
    out["disk_ratio"] = out["this"]["disk_bytes_per_step"] / payload
    out["step_ratio"] = out["this"]["step_ms_median"] / out["base"]["step_ms_median"]
    out["cpu_ratio"] = out["this"]["cpu_ms_median"] / out["base"]["cpu_ms_median"]
    print(
        f"bytes on disk per step / output: {out['disk_ratio']:.2f}x (goal <= 2x: "
        f"{'met' if out['disk_ratio'] <= 2 else 'missed'}); step time this / base: {out['step_ratio']:.2f} "
        f"(CPU per step: {out['cpu_ratio']:.2f})"
    )
    costs = sides["this"][0].get("materialise_us") or {}
    if costs:
        out["materialise_us"] = costs
        print(
            f"a task's input materialised: {costs['from_the_fold']:.1f} µs from the outputs the fold holds, "
            f"{costs['read_by_seq']:.1f} µs reading the referred event by seq"
        )
    if not args.no_profile:  # apart from the timed rounds: the meter slows what it watches
        print("json encoding and decoding per step (json.dumps/loads metered, one more run of each tree):")
        for name, tree in (("this", ROOT), ("base", base)):
            calls = _measure(tree, args.steps, args.size, profiled=True)["json"]
            out.setdefault("json", {})[name] = calls
            print(
                f"  {name:<4}  "
                + ", ".join(
                    f"{fn} {c['per_step']:.2f}/step, {c['bytes_per_step']:.0f} B = "
                    f"{c['bytes_per_step'] / payload:.2f}x the output ({c['ms_per_step']:.3f} ms)"
                    for fn, c in sorted(calls.items())
                )
            )
    out["elapsed_s"] = time.monotonic() - began
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"total {out['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()
