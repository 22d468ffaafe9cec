"""Shared pieces of the benchmarks: the self-looping spec, the bare append+fsync floor, percentiles."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# ~300 bytes, newline-terminated: the size of a small event line.
LINE = (b'{"seq":0,"type":"bench","data":{"pad":"' + b"x" * 300)[:297] + b'"}\n'


def loop_spec(turns: int) -> dict[str, Any]:
    """A custom loop whose one agent step routes back to itself while the output says "again".

    `workspace: none`: the benchmarks time the durable step itself, not a git snapshot of whatever
    directory they run in (the repository, with other people's files changing); bench/git_workspace.py
    times the workspace recording by overriding this key.
    """
    return {
        "name": "bench",
        "pattern": "custom",
        "workspace": "none",
        "agents": [{"name": "worker"}],
        "steps": [
            {
                "name": "work",
                "agent": "worker",
                "routes": {"field": "next", "map": {"again": "work", "stop": "done"}},
            },
            {"name": "done", "agent": "worker"},
        ],
        "policy": {"max_turns": turns + 10},
    }


AGAIN = {"next": "again"}


def structured(result: Any, what: str) -> dict[str, Any]:
    """A tool result's structured content; exits naming the call and the tool's error text if it failed."""
    if result.is_error:
        text = result.content[0].text if result.content else ""
        raise SystemExit(f"{what} failed: {text}")
    return result.structured_content or {}


def quiet_logs() -> None:
    """Keep the runs service's structlog info lines out of the figures."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@contextmanager
def bench_dir(given: str | None, prefix: str) -> Iterator[Path]:
    """The given directory (kept), or a fresh temp dir under the working dir (same disk; removed after)."""
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=os.getcwd()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FsyncFloor:
    """A bare O_APPEND file: one os.write of a ~300-byte line + os.fsync per call."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "fsync-floor.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def once(self) -> int:
        """One durable append; its duration in ns."""
        t0 = time.perf_counter_ns()
        os.write(self.fd, LINE)
        os.fsync(self.fd)
        return time.perf_counter_ns() - t0

    def close(self) -> None:
        os.close(self.fd)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def drift(values: Sequence[float]) -> float:
    """Median of the last 10% over the median of the first 10% (1.0 = no growth with the run)."""
    tenth = max(1, len(values) // 10)
    return median(values[-tenth:]) / median(values[:tenth])


def ms(ns: float) -> float:
    return ns / 1e6


def finish(out: dict[str, Any], began: float, json_path: str | None) -> None:
    """The run's close: elapsed time and load into `out`, `out` to --json if asked, the total printed."""
    out["elapsed_s"] = time.monotonic() - began
    out["load_avg"] = os.getloadavg()
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1))
    print(f"\ntotal {time.monotonic() - began:.1f} s")
