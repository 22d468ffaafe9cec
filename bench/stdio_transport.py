"""Server CPU of a durable `step` over MCP stdio, and the worker-thread hops it makes, A/B in one command.

Two stdio servers, each driven by the SDK's `Client`: this code, and (--before) the code of an earlier
checkout, e.g. the one whose stdio transport is the SDK's own (a worker thread per line read, two per
message written). The calls take turns in blocks; per call: the round trip's median, the server
process's CPU time (/proc) and its `anyio.to_thread.run_sync` calls (bench/_counted.py counts them; the
total over the session, handshake included, over its calls). Beside them, the same step through
`Runs.step` in this process: the service's CPU, which no transport can remove.

    python bench/stdio_transport.py --before /tmp/before --calls 600
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from _common import bench_dir, finish, median, ms, quiet_logs
from concurrency import _children, _cpu_s
from mcp import Client, StdioServerParameters
from mcp_roundtrip import InProcess, LoopengtOverMcp

COUNTED = Path(__file__).with_name("_counted.py")


def _params(store: Path, code: Path | None, hops: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[str(COUNTED), "serve", "--store", str(store)],
        cwd=str(code) if code is not None else os.getcwd(),
        env={"LOOPENGT_LOG_LEVEL": "WARNING", "LOOPENGT_BENCH_HOPS": str(hops), "PATH": os.environ["PATH"]},
    )


class Served:
    """One server process, its pid (for /proc), and one run stepped over MCP."""

    def __init__(self, client: Client, pid: int, hops: Path) -> None:
        self.step = LoopengtOverMcp(client)
        self.pid = pid
        self.hops = hops
        self.calls = 0
        self.wall: list[int] = []
        self.cpu = 0.0


async def _open(stack: AsyncExitStack, params: StdioServerParameters, hops: Path, turns: int) -> Served:
    known = _children()
    client = await stack.enter_async_context(Client(params))  # type: ignore[arg-type]
    (pid,) = _children() - known
    served = Served(client, pid, hops)
    await served.step.start(turns)
    served.calls = 2  # discover (or initialize) and start_run
    return served


async def bench(calls: int, warmup: int, block: int, directory: Path, before: Path | None) -> dict[str, Any]:
    kinds = {"now": None} if before is None else {"now": None, "before": before}
    served: dict[str, Served] = {}
    core = InProcess(directory / "core-store", calls + warmup)
    core_cpu: list[float] = []
    async with AsyncExitStack() as stack:
        for name, code in kinds.items():
            hops = directory / f"hops-{name}"
            served[name] = await _open(
                stack, _params(directory / f"store-{name}", code, hops), hops, calls + warmup
            )
        for s in served.values():
            for _ in range(warmup):
                await s.step.once()
            s.calls += warmup
        for turn, start in enumerate(range(0, calls, block)):
            count = min(block, calls - start)
            order = list(served.values())
            for s in order if turn % 2 == 0 else reversed(order):
                cpu0 = _cpu_s(s.pid)
                for _ in range(count):
                    s.wall.append(await s.step.once())
                s.cpu += _cpu_s(s.pid) - cpu0
                s.calls += count
            t0 = time.process_time()
            for _ in range(count):
                await core.once()
            core_cpu.append((time.process_time() - t0) / count)
    out: dict[str, Any] = {"calls": calls, "core_cpu_ms": median(core_cpu) * 1e3, "kinds": {}}
    for name, s in served.items():
        deadline = time.monotonic() + 10
        while not s.hops.exists() and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        hops = int(s.hops.read_text()) if s.hops.exists() else None
        out["kinds"][name] = {
            "median_ms": ms(median(s.wall)),
            "cpu_ms": s.cpu * 1e3 / calls,
            "hops_per_call": hops / s.calls if hops is not None else None,
            "commit": _commit(kinds[name]),
        }
    return out


def _commit(checkout: Path | None) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=checkout or Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def report(out: dict[str, Any]) -> None:
    print(f"\n{out['calls']} steps over MCP stdio per server, in turns; per call:")
    print(f"  {'':34}{'median ms':>10}{'server CPU ms':>15}{'thread hops':>13}")
    for name, k in out["kinds"].items():
        label = f"{'this code' if name == 'now' else 'earlier code'} ({k['commit']})"
        hops = f"{k['hops_per_call']:.1f}" if k["hops_per_call"] is not None else "?"
        print(f"  {label:34}{k['median_ms']:10.3f}{k['cpu_ms']:15.3f}{hops:>13}")
    print(f"  {'Runs.step in-process (CPU)':34}{'':10}{out['core_cpu_ms']:15.3f}")
    kinds = out["kinds"]
    if "before" in kinds:
        saved = kinds["before"]["cpu_ms"] - kinds["now"]["cpu_ms"]
        ratio = kinds["now"]["cpu_ms"] / kinds["before"]["cpu_ms"]
        out["cpu_ratio"] = ratio
        print(
            f"  server CPU a step, this code / the earlier: {ratio:.3f} ({saved:+.3f} ms saved); "
            f"round trip medians {kinds['now']['median_ms'] / kinds['before']['median_ms']:.3f}"
        )
    for name, k in kinds.items():
        rest = k["cpu_ms"] - out["core_cpu_ms"]
        print(f"  {name}: outside Runs.step (transport, session, tool layer) {rest:.3f} ms a step")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier commit, stepped in turns")
    parser.add_argument("--dir", help="work here (kept) instead of a fresh temp dir")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    quiet_logs()
    began = time.monotonic()
    with bench_dir(args.dir, ".bench-stdio-") as directory:
        out = anyio.run(bench, args.calls, args.warmup, args.block, directory, args.before)
    report(out)
    finish(out, began, args.json)


if __name__ == "__main__":
    main()
