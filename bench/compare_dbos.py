"""loopengt's PostgreSQL step beside a DBOS workflow step on the same PostgreSQL server, as a ratio.

DBOS (https://github.com/dbos-inc/dbos-transact-py) records each `@DBOS.step` of a `@DBOS.workflow` in its
system database before the workflow goes on: one durable write per step, as a loopengt step is one durable
transition. Each round runs, in fresh processes and fresh databases on the DSN's server, in turns:

- loopengt: `Runs(open_store(<db>))`, one run of the self-looping bench spec, N timed `Runs.step` calls;
- DBOS: one workflow of N timed steps (each returns the same small output loopengt's step submits).

Each side times every step (median, p90), its process's CPU per step and, when the server runs on this
machine, the PostgreSQL server's CPU per step (its backends, from /proc), all over the timed steps only.
Both sides' sessions commit with `synchronous_commit=on` (loopengt always sets it; DBOS is given it), so
the test server's `synchronous_commit=off` default helps neither.

DBOS is never a project dependency: its side runs under a Python of its own (`--dbos-python`, by default
.venv-dbos/bin/python of this checkout; `python3 -m venv .venv-dbos && .venv-dbos/bin/pip install
dbos==3.4.0`). This file's top level imports only the standard library, so that Python can run it too.

    python bench/compare_dbos.py --steps 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = {"next": "again"}  # what each step submits (loopengt) or returns (DBOS)
_TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ measuring


def _children_ticks(parent: int) -> int:
    """CPU ticks (user + system) of the live children of `parent`: the PostgreSQL server's backends."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            total += int(fields[11]) + int(fields[12])
    return total


class Meter:
    """This process's CPU and (with a local server) the server's, over a timed block."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    @contextmanager
    def timed(self, into: dict[str, Any]) -> Iterator[None]:
        server0 = _children_ticks(self.postmaster) if self.postmaster else None
        cpu0 = time.process_time()
        yield
        into["cpu_s"] = time.process_time() - cpu0
        if server0 is not None and self.postmaster:
            into["server_cpu_s"] = (_children_ticks(self.postmaster) - server0) / _TICK


# ------------------------------------------------------------------------------------------ the two sides


def loopengt_worker(dsn: str, steps: int, warmup: int, postmaster: int | None) -> dict[str, Any]:
    """N timed `Runs.step` calls on one run in a fresh PostgreSQL store (the project's Python)."""
    from _common import loop_spec, quiet_logs

    from loopengt_core.service.runs import Runs
    from loopengt_core.store import open_store

    quiet_logs()
    runs = Runs(open_store(dsn))
    out: dict[str, Any] = {}
    try:
        view = runs.start_run(spec=loop_spec(steps + warmup + 2))
        task = view.tasks[0].task_id
        for _ in range(warmup):
            task = runs.step(view.run_id, task, OUTPUT).tasks[0].task_id
        lat: list[int] = []
        clock = time.perf_counter_ns
        with Meter(postmaster).timed(out):
            for _ in range(steps):
                t0 = clock()
                task = runs.step(view.run_id, task, OUTPUT).tasks[0].task_id
                lat.append(clock() - t0)
        out["lat_ns"] = lat
    finally:
        runs.store.close()
    return out


def dbos_worker(dsn: str, steps: int, warmup: int, postmaster: int | None) -> dict[str, Any]:
    """One DBOS workflow of warmup + N steps on a fresh system database; the last N are timed."""
    import logging

    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {
        "name": "loopengt-bench",
        "system_database_url": dsn,
        "db_engine_kwargs": {"connect_args": {"options": "-c synchronous_commit=on"}},
        "log_level": "WARNING",
    }
    DBOS(config=config)
    out: dict[str, Any] = {}
    meter = Meter(postmaster)

    @DBOS.step()
    def work(index: int) -> dict[str, Any]:
        return dict(OUTPUT)

    @DBOS.workflow()
    def flow(count: int) -> list[int]:
        lat: list[int] = []
        clock = time.perf_counter_ns
        for index in range(warmup):
            work(index)
        with meter.timed(out):
            for index in range(count):
                t0 = clock()
                work(warmup + index)
                lat.append(clock() - t0)
        return lat

    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    try:
        out["lat_ns"] = flow(steps)
    finally:
        DBOS.destroy()
    return out


# ------------------------------------------------------------------------------------------ the parent


@contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """A new empty database on the DSN's server (no schema: each side makes its own), dropped afterwards."""
    import psycopg
    from postgres_scale import _with_database

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_side(
    python: str, side: str, dsn: str, args: argparse.Namespace, postmaster: int | None
) -> dict[str, Any]:
    """One side in a fresh process of its own Python; its figures as JSON on the last line of stdout."""
    cmd = [python, str(Path(__file__).resolve()), "--worker", side, "--target", dsn]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--postmaster", str(postmaster or 0)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {side} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Median and p90 step ms over every round's steps; CPU ms per step, summed over the rounds."""
    lat = sorted(x for r in runs for x in r["lat_ns"])
    n = steps * len(runs)
    out = {
        "median_ms": statistics.median(lat) / 1e6,
        "p90_ms": lat[int(0.9 * (len(lat) - 1))] / 1e6,
        "rounds_median_ms": [statistics.median(r["lat_ns"]) / 1e6 for r in runs],
        "cpu_ms": sum(r["cpu_s"] for r in runs) / n * 1e3,
    }
    if all("server_cpu_s" in r for r in runs):
        out["server_cpu_ms"] = sum(r["server_cpu_s"] for r in runs) / n * 1e3
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("LOOPENGT_TEST_POSTGRES"), help="PostgreSQL server")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps a side and round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the sides take turns in each")
    parser.add_argument("--dbos-python", default=str(HERE.parent / ".venv-dbos" / "bin" / "python"))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a worker may take")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--worker", choices=["loopengt", "dbos"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--postmaster", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        work = loopengt_worker if args.worker == "loopengt" else dbos_worker
        print(json.dumps(work(args.target, args.steps, args.warmup, args.postmaster or None)))
        return
    if not args.dsn:
        raise SystemExit("no PostgreSQL: pass --dsn or set LOOPENGT_TEST_POSTGRES (bash .ci/postgres.sh)")
    if not Path(args.dbos_python).exists():
        raise SystemExit(f"no DBOS Python at {args.dbos_python}: see this file's docstring")
    from postgres_scale import _redact, postmaster_pid  # the project's Python only

    began = time.monotonic()
    version = subprocess.run(
        [args.dbos_python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    postmaster = postmaster_pid(args.dsn)
    print(
        f"server {_redact(args.dsn)}; DBOS {version}; {args.steps} steps x {args.rounds} rounds a side, "
        f"warm-up {args.warmup}; server CPU {'measured' if postmaster else 'not measured (not local)'}"
    )
    results: dict[str, list[dict[str, Any]]] = {"loopengt": [], "dbos": []}
    for index in range(args.rounds):
        order = ("loopengt", "dbos") if index % 2 == 0 else ("dbos", "loopengt")
        for side in order:
            python = sys.executable if side == "loopengt" else args.dbos_python
            with fresh_database(args.dsn) as target:
                results[side].append(run_side(python, side, target, args, postmaster))
            print(
                f"  round {index + 1} {side}: median {statistics.median(results[side][-1]['lat_ns']) / 1e6:.3f} ms"
            )
    figures = {side: summary(found, args.steps) for side, found in results.items()}
    print("\n| system | median ms | p90 ms | round medians ms | client CPU ms/step | server CPU ms/step |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for side, f in figures.items():
        rounds = ", ".join(f"{x:.3f}" for x in f["rounds_median_ms"])
        server = f"{f['server_cpu_ms']:.3f}" if "server_cpu_ms" in f else ""
        print(
            f"| {side} | {f['median_ms']:.3f} | {f['p90_ms']:.3f} | {rounds} | {f['cpu_ms']:.3f} | {server} |"
        )
    ratio = figures["dbos"]["median_ms"] / figures["loopengt"]["median_ms"]
    print(f"\nDBOS median step / loopengt median step: {ratio:.2f}")
    if "server_cpu_ms" in figures["dbos"] and "server_cpu_ms" in figures["loopengt"]:
        mine = figures["loopengt"]["cpu_ms"] + figures["loopengt"]["server_cpu_ms"]
        theirs = figures["dbos"]["cpu_ms"] + figures["dbos"]["server_cpu_ms"]
        print(
            f"DBOS CPU per step (client + server) / loopengt's: {theirs:.3f} / {mine:.3f} = {theirs / mine:.2f}"
        )
    print(f"load average {os.getloadavg()[0]:.2f}; total {time.monotonic() - began:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "dbos_version": version}, indent=1))


if __name__ == "__main__":
    main()
