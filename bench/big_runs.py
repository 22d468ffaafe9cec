"""Big runs and many runs stay cheap (issue 22): the acceptance figures, beside the base commit's.

    python bench/big_runs.py [--steps 100000] [--spec-steps 5000] [--base COMMIT | --no-base]

Builds one run of --steps steps (fsync off while building: only the finished files are measured), then,
for this code and for the base commit's (a temporary git worktree, as run_all.py does), each over MCP
stdio against its own server on a copy of that store:

- a late submission (the same output again for a task closed long ago): its time, the server's RSS
  growth, and the time of a `list_templates` sent meanwhile (it waits if the event loop is blocked);
- the first page of the trace resource;
- and, in a process of its own, a sequential spec of --spec-steps steps: `start_run` and a `step`.

The base commit's figures that would take longer than --timeout seconds are reported as "> N".
Goals (issue 22): late submission < 50 ms with RSS growth < 20 MB; first trace page < 100 ms; a
5,000-step spec starts in < 1 s and steps in < 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import AGAIN, bench_dir, loop_spec, median, quiet_logs  # noqa: E402

BASE = "9c9e8cd"  # the commit before the changes of issue 22, cases 5, 8 and 9
SPEC_STEPS = 20  # steps timed on the big spec


# --- the big run ---------------------------------------------------------------------------------


def build_run(store: Path, steps: int) -> str:
    """A `steps`-step run of the self-looping bench spec, still running; fsync is skipped while building."""
    from loopengt_core.service.runs import Runs
    from loopengt_core.store import files
    from loopengt_core.store.files import fsio

    fsio.datasync = lambda fd: None  # type: ignore[assignment]  # building only; the figures read files
    runs = Runs(files.FileStore(store), cwd=store.parent)
    view = runs.start_run(spec=loop_spec(steps + 10), run_id="big")
    began = time.monotonic()
    for n in range(steps):
        view = runs.step(view.run_id, view.tasks[0].task_id, AGAIN)
        if n and n % 10000 == 0:
            print(f"  built {n} steps ({time.monotonic() - began:.0f} s)", flush=True)
    return view.run_id


# --- one server: late submission and the trace -------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _server_pid() -> int:
    """The loopengt server this process started (its child)."""
    mine = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == mine and b"loopengt_server" in cmdline:
            return int(entry.name)
    raise RuntimeError("the server process was not found")


async def _timed(fn: Any, limit: float) -> float | None:
    """Seconds `fn()` took, or None when it took longer than `limit`."""
    began = time.perf_counter()
    with anyio.move_on_after(limit):
        await fn()
        return time.perf_counter() - began
    return None


async def measure_server(
    code: Path, store: Path, run_id: str, late_task: str, limit: float
) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopengt_server", "serve", "--store", str(store)],
        cwd=str(code),  # `-m` imports the package from the working directory first: that code's server
        env={**os.environ, "LOOPENGT_LOG_LEVEL": "WARNING"},
    )
    out: dict[str, Any] = {}
    async with Client(params, mode="auto", read_timeout_seconds=3600) as client:  # type: ignore[arg-type]
        pid = _server_pid()
        await client.call_tool("get_run", {"run_id": run_id})  # loaded, as a server at work would have it
        await client.call_tool("list_templates", {})
        rss = _rss_mb(pid)
        other: list[float] = []

        async def late() -> None:
            result = await client.call_tool("step", {"run_id": run_id, "task_id": late_task, "output": AGAIN})
            assert not result.is_error, result

        async def meanwhile() -> None:
            await anyio.sleep(0.005)
            began = time.perf_counter()
            await client.call_tool("list_templates", {})
            other.append(time.perf_counter() - began)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(meanwhile)
            out["late_s"] = await _timed(late, limit)
        out["meanwhile_s"] = other[0] if other else None
        out["rss_growth_mb"] = _rss_mb(pid) - rss
        if out["late_s"] is not None:
            again = [await _timed(late, limit) for _ in range(5)]
            out["late_again_s"] = median([a for a in again if a is not None])

        async def first_page() -> None:
            await client.read_resource(f"loopengt://runs/{run_id}/trace", cache_mode="bypass")

        out["trace_first_page_s"] = await _timed(first_page, limit)
        out["rss_after_trace_mb"] = _rss_mb(pid) - rss
    return out


# --- a big spec, in a process of its own -------------------------------------------------------------


def spec_worker(steps: int, directory: Path) -> None:
    """Run in the code tree being measured (the working directory): time start_run and a few steps."""
    sys.path.insert(0, os.getcwd())  # that tree's loopengt_core, not this file's
    quiet_logs()
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore

    spec = {
        "name": "big-spec",
        "pattern": "sequential",
        "workspace": "none",
        "agents": [{"name": "w"}],
        "steps": [{"name": f"s{i}", "agent": "w", "prompt_template": "do {step}"} for i in range(steps)],
        "policy": {"max_turns": steps + 10},
    }
    runs = Runs(FileStore(directory), cwd=directory)
    began = time.perf_counter()
    view = runs.start_run(spec=spec)
    start = time.perf_counter() - began
    print(json.dumps({"start_s": start}), flush=True)
    times = []
    for _ in range(SPEC_STEPS):
        began = time.perf_counter()
        view = runs.step(view.run_id, view.tasks[0].task_id, {"ok": True})
        times.append(time.perf_counter() - began)
    print(json.dumps({"start_s": start, "step_s": median(times)}), flush=True)


def measure_spec(code: Path, steps: int, directory: Path, limit: float) -> dict[str, Any]:
    """The worker's last line, or what it managed before `limit` seconds (None: not even a start)."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    argv = [sys.executable, str(HERE / "big_runs.py"), "--spec-worker", str(steps), "--dir", str(directory)]
    try:
        done = subprocess.run(
            argv, cwd=code, env=env, capture_output=True, text=True, timeout=limit, check=True
        )
        lines = done.stdout
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        lines = raw.decode() if isinstance(raw, bytes) else raw
    found = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    return found[-1] if found else {}


# --- report ----------------------------------------------------------------------------------------------


def _figure(value: float | None, unit: str, limit: float) -> str:
    if value is None:
        return f"> {limit:.0f} s"
    return f"{value * 1000:.1f} ms" if unit == "ms" else f"{value:.2f} s"


def _ratio(now: float | None, base: float | None, limit: float) -> str:
    if now is None:
        return "-"
    if base is None:
        return f"< {now / limit:.2g}"
    return f"{now / base:.2g}" if base > 0 else "-"


def report(now: dict[str, Any], base: dict[str, Any] | None, args: argparse.Namespace) -> list[str]:
    rows = [
        ("late submission", "late_s", "ms", "< 50 ms"),
        ("late submission again (median of 5)", "late_again_s", "ms", ""),
        ("a call sent during the late submission", "meanwhile_s", "ms", "not blocked"),
        ("first trace page", "trace_first_page_s", "ms", "< 100 ms"),
        (f"{args.spec_steps:,}-step spec: start_run", "spec_start_s", "s", "< 1 s"),
        (f"{args.spec_steps:,}-step spec: step (median of {SPEC_STEPS})", "spec_step_s", "ms", "< 20 ms"),
    ]
    base_name = f"base {args.base}" if base is not None else "base (not run)"
    lines = [
        f"{args.steps:,}-step run; figure: this code | {base_name} | ratio this/base | goal",
    ]
    for label, key, unit, goal in rows:
        mine = now.get(key)
        theirs = base.get(key) if base is not None else None
        line = f"  {label}: {_figure(mine, unit, args.timeout)}"
        if base is not None and key == "spec_step_s" and base.get("spec_start_s") is None:
            line += " | never started | -"  # no step to time
        elif base is not None:
            line += f" | {_figure(theirs, unit, args.timeout)} | {_ratio(mine, theirs, args.timeout)}"
        lines.append(line + (f" | {goal}" if goal else ""))
    growth = f"  server RSS growth on the late submission: {now['rss_growth_mb']:.1f} MB"
    if base is not None:
        growth += f" | {base['rss_growth_mb']:.1f} MB"
    lines.append(growth + " | < 20 MB")
    return lines


def measure(
    code: Path, source: Path, directory: Path, run_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    store = directory / "store"
    shutil.copytree(source, store)
    print(f"measuring the code of {code} ...", flush=True)
    out = anyio.run(measure_server, code, store, run_id, "work#10", args.timeout)
    spec = measure_spec(code, args.spec_steps, directory / "spec", args.timeout)
    out["spec_start_s"] = spec.get("start_s")
    out["spec_step_s"] = spec.get("step_s")
    shutil.rmtree(store, ignore_errors=True)
    return out


def _checkout(commit: str, where: Path) -> Path:
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(where), commit],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return where


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the big run")
    parser.add_argument("--spec-steps", type=int, default=5000, help="steps of the big spec")
    parser.add_argument("--base", default=BASE, help="the commit to compare with")
    parser.add_argument("--no-base", action="store_true", help="measure this code only")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a figure is '> N'")
    parser.add_argument("--dir", help="work here (kept) instead of a temp directory")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--spec-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.spec_worker:
        spec_worker(args.spec_worker, Path(args.dir))
        return
    quiet_logs()
    with bench_dir(args.dir, ".bench-big-") as directory:
        source = directory / "source"
        began = time.monotonic()
        print(f"building a {args.steps:,}-step run ...", flush=True)
        run_id = build_run(source, args.steps)
        print(f"  built in {time.monotonic() - began:.0f} s", flush=True)
        now = measure(ROOT, source, directory / "now", run_id, args)
        base = None
        if not args.no_base:
            tree = _checkout(args.base, directory / "base-tree")
            try:
                base = measure(tree, source, directory / "base", run_id, args)
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)],
                    cwd=ROOT,
                    check=False,
                    capture_output=True,
                )
    lines = report(now, base, args)
    print("\n" + "\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"now": now, "base": base, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
