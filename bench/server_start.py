"""Time from spawning `loopengt serve` (stdio) to its first answer, with the SDK's own `Client`.

Each sample is a fresh process: `python -m loopengt_server serve --store TMP`, timed from spawn until
the client's connection is up (mode auto: the server's answer to `server/discover`, its first answer)
and until the answer to a first `tools/list`. Beside it, the floor no server can beat: a process that
only imports the SDK's server (`mcp.server.mcpserver`) and exits. With --before, the server of an
earlier checkout takes turns with this one (A/B in one command, same load), and the ratio of medians
is printed.

    python bench/server_start.py                                   # 15 starts each
    python bench/server_start.py --before /tmp/before --starts 21
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from _common import bench_dir, finish, median
from mcp import Client, StdioServerParameters

SDK_FLOOR = "import mcp.server.mcpserver"


def _params(store: Path, code: Path | None) -> StdioServerParameters:
    """The stdio server; with `code`, the one of that checkout (`-m` imports from the cwd first)."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopengt_server", "serve", "--store", str(store)],
        cwd=str(code) if code is not None else os.getcwd(),
        env={"LOOPENGT_LOG_LEVEL": "WARNING", "PATH": os.environ.get("PATH", "")},
    )


async def one_start(params: StdioServerParameters) -> tuple[float, float]:
    """Seconds from spawn to the first answer, and to the answer of a first tools/list."""
    t0 = time.perf_counter()
    async with Client(params) as client:  # type: ignore[arg-type]
        first = time.perf_counter() - t0
        tools = await client.list_tools()
        listed = time.perf_counter() - t0
        if not tools.tools:
            raise SystemExit("the server listed no tools")
    return first, listed


def sdk_floor() -> float:
    """Seconds a process takes to import the SDK's server and exit (no server can answer sooner)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", SDK_FLOOR], check=True)
    return time.perf_counter() - t0


async def bench(starts: int, directory: Path, before: Path | None) -> dict[str, Any]:
    kinds: dict[str, StdioServerParameters] = {"now": _params(directory / "store-now", None)}
    if before is not None:
        kinds["before"] = _params(directory / "store-before", before)
    await one_start(kinds["now"])  # warm the OS page cache for both
    if before is not None:
        await one_start(kinds["before"])
    first: dict[str, list[float]] = {k: [] for k in kinds}
    listed: dict[str, list[float]] = {k: [] for k in kinds}
    floor: list[float] = []
    for turn in range(starts):
        order = list(kinds) if turn % 2 == 0 else list(reversed(kinds))
        for name in order:
            a, b = await one_start(kinds[name])
            first[name].append(a)
            listed[name].append(b)
        floor.append(sdk_floor())
    return {"first": first, "listed": listed, "floor": floor}


def _commit(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or str(checkout)


def report(samples: dict[str, Any], starts: int, before: Path | None) -> dict[str, Any]:
    first, listed, floor = samples["first"], samples["listed"], samples["floor"]
    labels = {"now": "this code"}
    if before is not None:
        labels["before"] = f"code of {_commit(before)}"
    print(f"\n{starts} fresh `loopengt serve` processes each (stdio), medians")
    print(f"  {'':28}{'first answer s':>16}{'tools/list s':>14}")
    for name, label in labels.items():
        print(f"  {label:28}{median(first[name]):16.3f}{median(listed[name]):14.3f}")
    print(f"  {'import SDK server, exit':28}{median(floor):16.3f}")
    out: dict[str, Any] = {
        "starts": starts,
        "first_s": {k: median(v) for k, v in first.items()},
        "listed_s": {k: median(v) for k, v in listed.items()},
        "sdk_floor_s": median(floor),
    }
    if before is not None:
        ratio = median(first["now"]) / median(first["before"])
        paired = median([a / b for a, b in zip(first["now"], first["before"], strict=True)])
        print(
            f"  time to first answer, this code / the code of {_commit(before)}: {ratio:.3f} "
            f"(paired by turn {paired:.3f})"
        )
        out.update(ratio=ratio, ratio_paired=paired, before_commit=_commit(before))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=15, help="fresh processes of each kind")
    parser.add_argument("--before", type=Path, help="a checkout of an earlier commit, timed in turns")
    parser.add_argument("--dir", help="work here (kept) instead of a fresh temp dir")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    began = time.monotonic()
    with bench_dir(args.dir, ".bench-start-") as directory:
        samples = anyio.run(bench, args.starts, directory, args.before)
    out = report(samples, args.starts, args.before)
    finish(out, began, args.json)


if __name__ == "__main__":
    main()
