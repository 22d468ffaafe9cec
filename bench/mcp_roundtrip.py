"""A durable `step` over MCP stdio, beside the same SDK's no-op tool round trip and one append+fsync.

Two real stdio subprocesses, both driven by the SDK's `Client` (default mode: 2026-07-28; --mode legacy does
the 2025 handshake): `python -m loopengt_server serve --store TMP` and bench/_noop_server.py (one
`async def noop() -> str`). After a warm-up of each, ~N sequential calls of each kind run interleaved in
blocks (--block), with the bare append+fsync on the store's disk and an in-process `Runs.step` (same spec,
same disk) as the other two rows, so background load hits all four alike.

    python bench/mcp_roundtrip.py               # 500 calls each, modern mode
    python bench/mcp_roundtrip.py --mode legacy
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from _common import (
    AGAIN,
    FsyncFloor,
    bench_dir,
    drift,
    finish,
    loop_spec,
    median,
    ms,
    pct,
    quiet_logs,
    structured,
)
from mcp import Client, StdioServerParameters

from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

NOOP_SERVER = Path(__file__).with_name("_noop_server.py")


class LoopengtOverMcp:
    """One run on the loopengt stdio server; `once()` submits the open task and times the round trip."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.run_id = ""
        self.task = ""

    async def start(self, turns: int) -> None:
        view = structured(await self.client.call_tool("start_run", {"spec": loop_spec(turns)}), "start_run")
        self.run_id, self.task = view["run_id"], view["tasks"][0]["task_id"]

    async def once(self) -> int:
        args = {"run_id": self.run_id, "task_id": self.task, "output": AGAIN}
        t0 = time.perf_counter_ns()
        result = await self.client.call_tool("step", args)
        elapsed = time.perf_counter_ns() - t0
        self.task = structured(result, "step")["tasks"][0]["task_id"]
        return elapsed


class Noop:
    """One call of a tool of the bare SDK server (`noop`, or `append_fsync`: the no-op plus one fsync)."""

    def __init__(self, client: Client, tool: str = "noop") -> None:
        self.client = client
        self.tool = tool

    async def once(self) -> int:
        t0 = time.perf_counter_ns()
        result = await self.client.call_tool(self.tool, {})
        elapsed = time.perf_counter_ns() - t0
        if result.is_error:
            raise SystemExit(f"{self.tool} failed")
        return elapsed


class InProcess:
    """The same step through `Runs.step` in this process: the service's share of the MCP figure."""

    def __init__(self, root: Path, turns: int) -> None:
        self.runs = Runs(FileStore(root))
        view = self.runs.start_run(spec=loop_spec(turns))
        self.run_id, self.task = view.run_id, view.tasks[0].task_id

    async def once(self) -> int:
        t0 = time.perf_counter_ns()
        answer = self.runs.step(self.run_id, self.task, AGAIN)
        elapsed = time.perf_counter_ns() - t0
        self.task = answer.tasks[0].task_id
        return elapsed


async def _fsync_once(floor: FsyncFloor) -> int:
    return floor.once()


def _server(store: Path, code: Path | None) -> StdioServerParameters:
    """The loopengt stdio server; with `code`, the one of that checkout (`-m` imports from the cwd first)."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopengt_server", "serve", "--store", str(store)],
        cwd=str(code) if code is not None else os.getcwd(),
        env={"LOOPENGT_LOG_LEVEL": "WARNING"},
    )


async def bench(
    calls: int, warmup: int, block: int, mode: str, directory: Path, *, before: Path | None = None
) -> dict[str, Any]:
    loop_params = _server(directory / "mcp-store", None)
    noop_params = StdioServerParameters(
        command=sys.executable, args=[str(NOOP_SERVER), str(directory / "noop-fsync.log")], cwd=os.getcwd()
    )
    floor = FsyncFloor(directory)
    async with AsyncExitStack() as stack:
        t0 = time.perf_counter()
        loop_client = await stack.enter_async_context(Client(loop_params, mode=mode))  # type: ignore[arg-type]
        started = time.perf_counter() - t0
        noop_client = await stack.enter_async_context(Client(noop_params, mode=mode))  # type: ignore[arg-type]
        protocol = loop_client.protocol_version
        step = LoopengtOverMcp(loop_client)
        await step.start(calls + warmup)
        earlier = None
        if before is not None:
            before_params = _server(directory / "mcp-store-before", before)
            earlier = LoopengtOverMcp(await stack.enter_async_context(Client(before_params, mode=mode)))  # type: ignore[arg-type]
            await earlier.start(calls + warmup)
        core = InProcess(directory / "core-store", calls + warmup)
        kinds: dict[str, Callable[[], Awaitable[int]]] = {
            "noop": Noop(noop_client).once,
            "noop_fsync": Noop(noop_client, "append_fsync").once,
            "fsync": lambda: _fsync_once(floor),
            "core": core.once,
            "step": step.once,
        }
        if earlier is not None:
            kinds["step_before"] = earlier.once
        for once in kinds.values():
            for _ in range(warmup):
                await once()
        samples: dict[str, list[int]] = {k: [] for k in kinds}
        blocks = []
        for start in range(0, calls, block):
            count = min(block, calls - start)
            blocks.append((start, start + count))
            for name, once in kinds.items():
                for _ in range(count):
                    samples[name].append(await once())
    floor.close()
    return report(samples, blocks, calls=calls, mode=mode, protocol=protocol, started=started, before=before)


def report(
    samples: dict[str, list[int]],
    blocks: list[tuple[int, int]],
    *,
    calls: int,
    mode: str,
    protocol: Any,
    started: float,
    before: Path | None = None,
) -> dict[str, Any]:
    labels = {
        "step": "loopengt step over MCP",
        "noop": "no-op tool over MCP",
        "noop_fsync": "no-op + append+fsync tool",
        "fsync": "bare append+fsync",
        "core": "Runs.step in-process",
    }
    if "step_before" in samples:
        labels["step_before"] = f"step over MCP, code of {_commit(before)}"
    print(
        f"\nmode {mode} (protocol {protocol}), {calls} sequential calls each after warm-up; "
        f"server start + connect {started:.2f} s"
    )
    print(f"  {'':26}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}{'last/first 10%':>16}")
    for name, label in labels.items():
        v = samples[name]
        print(f"  {label:26}{ms(median(v)):11.3f}{ms(pct(v, 99)):9.3f}{ms(max(v)):9.2f}{drift(v):16.2f}")
    step, noop, noop_fsync, fsync, core = (
        median(samples[k]) for k in ("step", "noop", "noop_fsync", "fsync", "core")
    )
    ratio = step / noop_fsync
    verdict = "ok" if ratio <= 1.5 else "over the goal"
    print(f"  step / (no-op + append+fsync in one SDK tool), medians: {ratio:.2f} (goal <= 1.5: {verdict})")
    paired = median([median(samples["step"][a:b]) / median(samples["noop_fsync"][a:b]) for a, b in blocks])
    print(f"  same, paired by block (median of per-block ratios): {paired:.2f}")
    p99 = pct(samples["step"], 99) / pct(samples["noop_fsync"], 99)
    print(f"  same with p99s: {p99:.2f}")
    before_ratio = None
    if "step_before" in samples:
        before_ratio = median(samples["step_before"]) / noop_fsync
        print(f"  the same ratio for the code of {_commit(before)}: {before_ratio:.2f}")
    summed = step / (noop + fsync)
    print(
        f"  step / (no-op + bare fsync measured back to back): {summed:.2f} (the back-to-back fsync "
        f"{ms(fsync):.3f} ms vs {ms(noop_fsync - noop):.3f} ms inside a round trip)"
    )
    print(
        f"  split of the median step: transport (no-op) {ms(noop):.3f} ms + Runs.step {ms(core):.3f} ms "
        f"+ the rest (thread hop, tool layer, notifications) {ms(step - noop - core):.3f} ms "
        "(medians do not add exactly)"
    )
    return {
        "mode": mode,
        "protocol": str(protocol),
        "calls": calls,
        "started_s": started,
        "rows": {
            name: {
                "label": label,
                "median_ms": ms(median(samples[name])),
                "p99_ms": ms(pct(samples[name], 99)),
                "max_ms": ms(max(samples[name])),
                "growth": drift(samples[name]),
            }
            for name, label in labels.items()
        },
        "ratio": ratio,
        "ratio_goal": 1.5,
        "ratio_met": ratio <= 1.5,
        "ratio_paired": paired,
        "ratio_p99": p99,
        "ratio_summed": summed,
        "ratio_before": before_ratio,
        "before_commit": _commit(before) if before is not None else None,
        "split_ms": {"transport": ms(noop), "service": ms(core), "rest": ms(step - noop - core)},
    }


def _commit(checkout: Path | None) -> str:
    """The short commit id of a checkout, for labels."""
    if checkout is None:
        return "?"
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or str(checkout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="measured calls of each kind")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured calls of each kind first")
    parser.add_argument("--block", type=int, default=50, help="interleave the five kinds in blocks of this")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="auto = 2026-07-28")
    parser.add_argument("--store", help="directory for the stores (kept); default a temp dir here")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier commit: its server is timed too, interleaved (before/after)",
    )
    args = parser.parse_args(argv)
    quiet_logs()
    began = time.monotonic()
    with bench_dir(args.store, ".bench-mcp-") as directory:
        print(
            f"loopengt step over MCP stdio vs no-op round trip + append+fsync; store {directory} "
            f"(load avg {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, python {sys.version.split()[0]})"
        )
        out = anyio.run(
            functools.partial(
                bench, args.calls, args.warmup, args.block, args.mode, directory, before=args.before
            )
        )
    finish(out, began, args.json)


if __name__ == "__main__":
    main()
