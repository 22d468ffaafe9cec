"""PostgreSQL kill suite: the database server is killed (SIGKILL to the postmaster and every backend) in
the middle of a burst of steps, again and again, on a server configured the way .ci/postgres.sh does it
(fsync=off, synchronous_commit=off). Run explicitly (it is not collected by `python -m pytest`):

    python -m pytest tests/durability/pgkill_suite.py -q -s

The suite starts a PostgreSQL server of its own (its own data directory and port, through .ci/postgres.sh),
so the shared test server is never killed; it restarts it after each kill (crash recovery) and stops and
removes it at the end. A step is acknowledged when `Runs.step` returned, the same call the MCP `step` tool
makes. After each restart a new `Runs` reads the run from the database and must find every acknowledged
output: the store insists on `synchronous_commit = on` for its own sessions, so a commit is acknowledged
only once its WAL has reached the operating system. (With fsync=off an operating-system crash or power loss
could still lose data; killing PostgreSQL must not.) Without that setting such kills lose a few of the last
acknowledged steps (issue 22: 2 of 59).

Needs root or the server binaries (.ci/postgres.sh installs them); skipped locally without them, like the
multi-server suite. LOOPENGT_DURABILITY_SEED=N replays a printed seed (timing still varies);
LOOPENGT_DURABILITY_PGKILL_KILLS=N sets the number of kills (default 12).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from durability_helpers import seed_from_env

from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import OutputSubmitted
from loopengt_core.service.runs import Runs
from loopengt_core.store.postgres import PostgresStore

REPO = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("LOOPENGT_DURABILITY_PGKILL_KILLS", "12"))
SEED = seed_from_env()

LOOP: dict[str, Any] = {
    "name": "pg-kill",
    "goal": "many steps while the database dies",
    "pattern": "evaluator_optimizer",
    "agents": [{"name": "critic"}, {"name": "coder"}],
    "steps": [{"name": "evaluate", "agent": "critic"}, {"name": "optimize", "agent": "coder"}],
    "policy": {"max_turns": 100_000},
    "workspace": "none",
}


@dataclass
class Server:
    """A PostgreSQL server of this suite's own, started (and restarted) by .ci/postgres.sh."""

    data: Path
    port: int
    env: dict[str, str]
    dsn: str = ""

    def start(self) -> str:
        proc = subprocess.run(
            ["bash", str(REPO / ".ci" / "postgres.sh")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f".ci/postgres.sh failed:\n{proc.stderr[-3000:]}")
        dsn = proc.stdout.strip().splitlines()[-1]
        assert not self.dsn or dsn == self.dsn, f"the server came back elsewhere: {dsn} (was {self.dsn})"
        self.dsn = dsn
        return dsn

    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def kill(self) -> int:
        """SIGKILL the postmaster and all its children at once: a crash, no shutdown checkpoint."""
        main = self.postmaster()
        children = [
            int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _parent_of(int(entry)) == main
        ]
        for pid in (main, *children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in (main, *children)):
            if time.monotonic() > deadline:
                pytest.fail("PostgreSQL processes survived SIGKILL for 30 s")
            time.sleep(0.02)
        # Dead, but a zombie until init reaps it, and pg_ctl (like the postmaster's lock-file check) takes
        # a zombie for a live server. Wait for the reaping; if init is slow, the locks are stale: remove them.
        reaped = time.monotonic() + 5
        while _exists(main) and time.monotonic() < reaped:
            time.sleep(0.02)
        if _exists(main):
            for lock in (self.data / "postmaster.pid", *self.data.glob(".s.PGSQL.*.lock")):
                lock.unlink(missing_ok=True)
        return len(children) + 1

    def stop(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if bins and (self.data / "postmaster.pid").exists():
            runuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run(
                [*runuser, str(bins[-1]), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.data, ignore_errors=True)


def _parent_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port(start: int) -> int:
    import socket

    for port in range(start, start + 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))  # nothing listens on it and no connection uses it
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the suite's PostgreSQL server")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0 and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        if os.environ.get("CI"):
            pytest.fail("the PostgreSQL kill suite needs root or the PostgreSQL server binaries")
        pytest.skip("needs root or the PostgreSQL server binaries (.ci/postgres.sh)")
    # Below the kernel's ephemeral range (32768-60999 here): a server restarted a dozen times on a port in
    # that range can find it taken by some client connection's local port ("Address already in use").
    port = _free_port(24400)
    data = Path(f"/tmp/loopengt-pgkill-{uuid.uuid4().hex[:8]}")  # /tmp: the postgres user must reach it
    env = {
        **os.environ,
        "LOOPENGT_PG_PORT": str(port),
        "LOOPENGT_PG_DATA": str(data),
        "LOOPENGT_PG_DATABASE": "loopengt_kill",
        "LOOPENGT_PG_ENV_FILE": str(tmp_path_factory.mktemp("pgkill") / "postgres.env"),
    }
    own = Server(data, port, env)
    try:
        own.start()
        yield own
    finally:
        own.stop()


@dataclass
class Ledger:
    acked: dict[str, Any] = field(default_factory=dict)  # task_id -> output, acknowledged
    lost: list[tuple[str, Any]] = field(default_factory=list)  # acknowledged, then not found after a kill


def burst(runs: Runs, run_id: str, ledger: Ledger, stop: threading.Event, counter: list[int]) -> None:
    """Step the run as fast as it answers until the database goes away (or `stop`)."""
    while not stop.is_set():
        try:
            task = runs.get_run(run_id).tasks[0]
            counter[0] += 1
            output = {"score": 0.1, "summary": f"try {counter[0]}", "n": counter[0]}
            runs.step(run_id, task.task_id, output)
        except LoopengtError:
            return  # the server is gone: whatever was in flight is not acknowledged
        ledger.acked[task.task_id] = output


def verify(dsn: str, run_id: str, ledger: Ledger) -> int:
    """Every acknowledged output is in the log, read by a new store (what a restarted server sees)."""
    store = PostgresStore(dsn)
    try:
        recorded = {e.task_id: e.output for e in store.events(run_id) if isinstance(e, OutputSubmitted)}
    finally:
        store.close()
    for task_id, output in list(ledger.acked.items()):
        if recorded.get(task_id) != output:
            ledger.lost.append((task_id, output))
            del ledger.acked[task_id]  # the task is open again; a later ack must not hide the loss
    return len(recorded)


def wait_for_store(dsn: str) -> Runs:
    deadline = time.monotonic() + 60
    while True:
        runs = Runs(PostgresStore(dsn))
        try:
            runs.list_runs()
            return runs
        except LoopengtError:
            runs.store.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.timeout(120 + 60 * KILLS)  # a burst may wait out the pool's 30 s timeout after a kill
def test_killing_postgres_mid_burst_loses_no_acknowledged_step(server: Server) -> None:
    rng = random.Random(SEED)
    print(
        f"\n[pgkill] seed {SEED}, {KILLS} kills, server on port {server.port} (fsync=off, synchronous_commit=off)"
    )
    runs = wait_for_store(server.dsn)
    run_id = runs.start_run(spec=LOOP).run_id
    ledger, counter, killed_processes = Ledger(), [0], 0
    started = time.monotonic()
    for kill in range(1, KILLS + 1):
        stop = threading.Event()
        before, lost_before = len(ledger.acked), len(ledger.lost)
        worker = threading.Thread(target=burst, args=(runs, run_id, ledger, stop, counter), daemon=True)
        worker.start()
        time.sleep(rng.uniform(0.3, 1.5))
        killed_processes += server.kill()
        worker.join(timeout=60)
        stop.set()
        assert not worker.is_alive(), "a step hung after the database was killed"
        runs.store.close()
        server.start()  # crash recovery
        runs = wait_for_store(server.dsn)
        recorded = verify(server.dsn, run_id, ledger)
        lost_now = len(ledger.lost) - lost_before
        print(
            f"[pgkill] kill {kill}: {len(ledger.acked) + lost_now - before} steps acknowledged in the "
            f"burst, {recorded} recorded in all, lost {lost_now}"
        )
    runs.store.close()
    acked = len(ledger.acked) + len(ledger.lost)
    print(
        f"[pgkill] kills: {KILLS} ({killed_processes} processes), acknowledged steps: {acked}, "
        f"lost: {len(ledger.lost)}, in {time.monotonic() - started:.0f} s"
    )
    assert ledger.lost == [], f"acknowledged steps lost: {ledger.lost}"
