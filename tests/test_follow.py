"""`loopengt show RUN_ID --follow`: a real follower process watching a run that another process drives.

The follower's stdout is a pipe, so it prints plain lines; each update must appear before the driver
takes its next step (so it is live, not printed at the end), and it must exit when the run ends: 0 if
the run completed, 1 otherwise. Runs on both stores (PostgreSQL when LOOPENGT_TEST_POSTGRES is set).
"""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from loopengt_core.service.reading import RunReader
from loopengt_core.service.runs import Runs
from loopengt_core.store import open_store
from loopengt_server.present.follow import follow

WAIT_SECONDS = 20.0

SPEC: dict[str, Any] = {
    "name": "followed",
    "goal": "watch me",
    "pattern": "sequential",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "plan", "agent": "a", "verification_gates": ["ok"]},
        {"name": "build", "agent": "a"},
    ],
    "policy": {"verification_gates": [{"name": "ok", "condition": "output.ok == `true`"}]},
}

DRIVER = textwrap.dedent(
    """
    import json, sys
    from loopengt_core.service.logs import configure
    from loopengt_core.service.runs import Runs
    from loopengt_core.store import open_store

    configure()  # logs to stderr: stdout answers the test
    runs = Runs(open_store(sys.argv[1]))
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "start":
            view = runs.start_run(spec=command["spec"], run_id=command["run_id"])
        elif command["do"] == "step":
            view = runs.step(command["run_id"], command["task_id"], command["output"])
        else:
            view = runs.cancel_run(command["run_id"], "stopped by the test")
        print(view.status, flush=True)
    """
)


@pytest.fixture(params=["files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return postgres_url(request.getfixturevalue("postgres_dsn"))
    return str(tmp_path / "store")


def postgres_url(dsn: str) -> str:
    """The test database as a postgresql:// URL, the form `--store` recognises."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    password = f":{p['password']}" if p.get("password") else ""
    return f"postgresql://{p.get('user', '')}{password}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p['dbname']}"


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


class Lines:
    """A process's stdout, read line by line on a thread so the test can wait with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, *needles: str) -> str:
        """The first new line containing every needle; fails after WAIT_SECONDS, showing what came."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"output ended before a line with {needles}; got:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if all(n in line for n in needles):
                return line
        pytest.fail(f"no line with {needles} within {WAIT_SECONDS}s; got:\n" + "\n".join(self.seen))


class Driver:
    """Another process that drives the run through the runs service on the same store."""

    def __init__(self, location: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, location],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=cwd,
        )
        self.out = Lines(self.process)

    def send(self, **command: Any) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.out.wait_for("")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(WAIT_SECONDS)


@pytest.fixture
def driver(location: str, tmp_path: Path) -> Iterator[Driver]:
    started = Driver(location, tmp_path)
    yield started
    started.close()


def start_follower(run_id: str, location: str, cwd: Path) -> tuple[subprocess.Popen[str], Lines]:
    process = subprocess.Popen(
        [sys.executable, "-m", "loopengt_server", "show", run_id, "--follow", "--store", location],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=cwd,
    )
    return process, Lines(process)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        code = process.wait(WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the follower did not exit after the run ended")
    assert process.stderr is not None
    return code, process.stderr.read()


def test_follow_shows_each_update_live_and_exits_0_when_the_run_completes(
    driver: Driver, location: str, tmp_path: Path
) -> None:
    assert driver.send(do="start", spec=SPEC, run_id="watched") == "running"
    follower, lines = start_follower("watched", location, tmp_path)
    try:
        lines.wait_for("run watched (loop followed)", "open plan#1")
        lines.wait_for("following;")

        driver.send(do="step", run_id="watched", task_id="plan#1", output={"ok": False})
        lines.wait_for("gate_failed", "ok on plan#1")
        lines.wait_for("task_issued", "plan#2", "attempt 2", "feedback")
        lines.wait_for("status running", "open plan#2")

        driver.send(do="step", run_id="watched", task_id="plan#2", output={"ok": True})
        lines.wait_for("gate_passed", "ok on plan#2")
        lines.wait_for("step_completed", "plan")
        lines.wait_for("status running", "turn 2", "open build#1")
        assert follower.poll() is None  # still following: the run has not ended

        driver.send(do="step", run_id="watched", task_id="build#1", output="built")
        lines.wait_for("run_completed")
        lines.wait_for("run watched completed after 3 turns")
        code, errors = finish(follower)
    finally:
        follower.kill()
    assert code == 0, errors
    assert errors == ""


def test_follow_exits_1_when_the_run_is_cancelled(driver: Driver, location: str, tmp_path: Path) -> None:
    driver.send(do="start", spec=SPEC, run_id="doomed")
    follower, lines = start_follower("doomed", location, tmp_path)
    try:
        lines.wait_for("following;")
        driver.send(do="cancel", run_id="doomed")
        lines.wait_for("run_cancelled", "stopped by the test")
        lines.wait_for("run doomed cancelled: stopped by the test")
        code, _ = finish(follower)
    finally:
        follower.kill()
    assert code == 1


def test_follow_of_an_ended_run_prints_it_and_exits_at_once(location: str, tmp_path: Path) -> None:
    runs = Runs(open_store(location), cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="done")
    runs.step("done", "plan#1", {"ok": True})
    runs.step("done", "build#1", "x")
    runs.store.close()
    follower, lines = start_follower("done", location, tmp_path)
    lines.wait_for("status completed")
    lines.wait_for("run_completed")
    lines.wait_for("run done completed after 2 turns")
    code, _ = finish(follower)
    assert code == 0
    assert not any("following;" in line for line in lines.seen)


def test_follow_of_an_unknown_run_is_one_error_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loopengt_server", "show", "nope", "--follow", "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "no run 'nope'" in done.stderr


def test_follow_with_json_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopengt_server",
            "show",
            "x",
            "--follow",
            "--json",
            "--store",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert done.returncode == 2
    assert "--follow" in done.stderr


def test_live_view_on_a_terminal_draws_status_tasks_steps_gates_and_events(tmp_path: Path) -> None:
    """On a TTY the view is a rich Live panel, redrawn as the run moves until it ends."""
    store = open_store(str(tmp_path / "store"))
    runs = Runs(store, cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="live")
    runs.step("live", "plan#1", {"ok": False})

    def drive() -> None:
        time.sleep(0.5)
        runs.step("live", "plan#2", {"ok": True})
        time.sleep(0.5)
        runs.step("live", "build#1", "done")

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140, color_system=None)
    worker = threading.Thread(target=drive)
    worker.start()
    final = follow(RunReader(open_store(str(tmp_path / "store"))), "live", console=console, poll_seconds=0.05)
    worker.join()
    drawn = screen.getvalue()
    assert final.status == "completed"
    for text in ("live", "loop followed", "open task", "plan#2", "attempts", "gate", "last events"):
        assert text in drawn
    assert "waiting_approval" not in drawn
    assert drawn.rstrip().endswith("run live completed after 3 turns")
