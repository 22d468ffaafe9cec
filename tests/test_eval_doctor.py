"""`loopengt eval` (metrics from a run's trace) and `loopengt doctor` (is this place ready?).

Metrics are a pure fold over events: the runs here are driven by the runs service with a clock the test
moves, so every duration is known exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import RunResumed
from loopengt_core.service.metrics import MetricsFold, run_metrics
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore
from loopengt_server.doctor import check_clients, check_file_store, check_postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

SPEC: dict[str, Any] = {
    "name": "measured",
    "goal": "be measured",
    "pattern": "sequential",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "plan", "agent": "a", "verification_gates": ["ok"]},
        {"name": "build", "agent": "a", "verification_gates": ["ok", "human"]},
        {"name": "ship", "agent": "a"},
    ],
    "policy": {
        "retry": {"max_retries": 2},
        "verification_gates": [
            {"name": "ok", "condition": "output.ok == `true`"},
            {"name": "human", "approval": True},
        ],
    },
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = T0 + timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs(tmp_path: Path, clock: Clock) -> Runs:
    return Runs(FileStore(tmp_path / "store"), cwd=tmp_path, clock=clock)


def drive_to_completion(runs: Runs, clock: Clock) -> None:
    runs.start_run(spec=SPEC, run_id="m")
    clock.at(10)
    runs.step("m", "plan#1", {"ok": False})  # ok fails: retry
    clock.at(25)
    runs.step("m", "plan#2", {"ok": True})  # first accepted output at 25 s
    clock.at(40)
    runs.step("m", "build#1", {"ok": True})  # waits for a person from 40 s
    clock.at(100)
    runs.approve("m", approved=False, comment="not yet")  # 60 s of waiting; a rejection fails the gate
    clock.at(110)
    runs.step("m", "build#2", {"ok": True})  # waits again from 110 s
    clock.at(130)
    runs.approve("m")  # 20 s more
    clock.at(150)
    assert runs.step("m", "ship#1", "shipped").status == "completed"


def test_metrics_of_a_completed_run(runs: Runs, clock: Clock) -> None:
    drive_to_completion(runs, clock)
    metrics = run_metrics(runs.store.events("m"))
    assert metrics.run_id == "m"
    assert metrics.loop == "measured"
    # loopengt 0.1.0's metrics, under their names
    assert metrics.run_status == "completed"
    assert metrics.total_turns == 5
    assert metrics.total_steps == 3
    assert metrics.completed_steps == 3
    assert metrics.failed_steps == 0
    assert metrics.success_rate == 1.0
    assert metrics.total_duration_seconds == 150.0
    # and the new ones
    assert [(s.step, s.attempts) for s in metrics.attempts] == [("plan", 2), ("build", 2), ("ship", 1)]
    gates = {g.gate: (g.passed, g.failed, g.pass_rate) for g in metrics.gates}
    assert gates == {"ok": (3, 1, 0.75), "human": (1, 1, 0.5)}
    assert metrics.approvals_requested == 2
    assert metrics.approval_wait_seconds == 80.0
    assert metrics.first_accepted_output_seconds == 25.0
    assert metrics.started_at == "2026-03-01T09:00:00.000Z"
    assert metrics.ended_at == "2026-03-01T09:02:30.000Z"
    assert metrics.events == len(runs.store.events("m"))


def test_metrics_while_waiting_count_up_to_now(runs: Runs, clock: Clock) -> None:
    runs.start_run(spec=SPEC, run_id="w")
    clock.at(5)
    runs.step("w", "plan#1", {"ok": True})
    clock.at(20)
    runs.step("w", "build#1", {"ok": True})
    events = runs.store.events("w")
    metrics = run_metrics(events, now=T0 + timedelta(seconds=50))
    assert metrics.run_status == "waiting_approval"
    assert metrics.approval_wait_seconds == 30.0
    assert metrics.total_duration_seconds == 50.0
    assert metrics.success_rate == round(1 / 3, 4)
    assert metrics.first_accepted_output_seconds == 5.0
    without_now = run_metrics(events)  # no clock: up to the last event
    assert (without_now.approval_wait_seconds, without_now.total_duration_seconds) == (0.0, 20.0)


def test_metrics_of_a_failed_run(runs: Runs, clock: Clock) -> None:
    runs.start_run(spec={**SPEC, "policy": {**SPEC["policy"], "retry": {"max_retries": 0}}}, run_id="f")
    clock.at(3)
    assert runs.step("f", "plan#1", {"ok": False}).status == "failed"
    metrics = run_metrics(runs.store.events("f"))
    assert (metrics.run_status, metrics.failed_steps, metrics.completed_steps) == ("failed", 1, 0)
    assert metrics.success_rate == 0.0
    assert metrics.first_accepted_output_seconds is None
    assert [(g.gate, g.passed, g.failed, g.pass_rate) for g in metrics.gates] == [("ok", 0, 1, 0.0)]


def test_fold_is_incremental_and_pure(runs: Runs, clock: Clock) -> None:
    drive_to_completion(runs, clock)
    events = runs.store.events("m")
    fold = MetricsFold()
    seen = []
    for event in events:
        fold.add(event)
        seen.append(fold.result().total_turns)
    assert fold.result() == run_metrics(events) == run_metrics(list(events))
    assert seen == sorted(seen)
    assert seen[-1] == 5


def test_metrics_need_a_trace() -> None:
    with pytest.raises(StoreCorrupt):
        run_metrics([])
    with pytest.raises(StoreCorrupt):
        run_metrics([RunResumed(seq=1, at="2026-01-01T00:00:00.000Z")])


# --- the commands -------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parents[1])
    base = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "loopengt_server", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def test_eval_command_text_and_json(runs: Runs, clock: Clock, tmp_path: Path) -> None:
    drive_to_completion(runs, clock)
    store = str(tmp_path / "store")
    as_json = cli("eval", "m", "--json", "--store", store, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data == run_metrics(runs.store.events("m")).model_dump(mode="json")
    text = cli("eval", "m", "--store", store, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    for needle in ("success_rate", "1.0", "approval_wait_seconds", "80.0", "plan", "75%", "human"):
        assert needle in text.stdout
    missing = cli("eval", "nope", "--store", store, cwd=tmp_path)
    assert missing.returncode == 1
    assert "no run 'nope'" in missing.stderr


def _doctor_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "CODEX_HOME": str(home / ".codex")}


def test_doctor_in_a_fresh_directory_warns_about_clients_and_passes(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = cli("doctor", cwd=project, env=_doctor_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("OK    python")
    assert any(line.startswith("OK    mcp") for line in lines)
    assert any(line.startswith("OK    store") and "does not exist yet" in line for line in lines)
    assert any(line.startswith("WARN  clients") and "fix: loopengt init --client" in line for line in lines)
    assert lines[-1].endswith(" ok")
    assert not (project / ".loopengt").exists()  # doctor created nothing


def test_doctor_reads_each_client_config(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".cursor").mkdir(parents=True)
    (project / ".vscode").mkdir()
    env = _doctor_env(tmp_path)
    (project / ".mcp.json").write_text(
        json.dumps(
            {"mcpServers": {"loopengt": {"command": sys.executable, "args": ["-m", "loopengt_server"]}}}
        )
    )
    (project / ".vscode" / "mcp.json").write_text(json.dumps({"servers": {"other": {"command": "x"}}}))
    (project / ".cursor" / "mcp.json").write_text("{ not json")
    codex = Path(env["CODEX_HOME"])
    codex.mkdir()
    (codex / "config.toml").write_text(
        '[mcp_servers.loopengt]\ncommand = "no-such-loopengt"\nargs = ["serve"]\n'
    )
    done = cli("doctor", cwd=project, env=env)
    assert done.returncode == 1  # the broken cursor file is a failure
    out = done.stdout
    assert (
        f"OK    claude-code            .mcp.json: server 'loopengt' runs `{sys.executable} -m loopengt_server`"
        in out
    )
    assert "FAIL  cursor                 .cursor/mcp.json does not parse" in out
    assert (
        "WARN  vscode                 .vscode/mcp.json has no loopengt server -> fix: loopengt init --client vscode"
        in out
    )
    assert "WARN  codex" in out
    assert "'no-such-loopengt', which is not on PATH here" in out
    assert "WARN  clients" not in out  # one client is configured
    assert out.splitlines()[-1].startswith("1 failed, 2 warnings")


def test_doctor_store_checks(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert check_file_store(str(blocker / "store")).level == "FAIL"
    store = FileStore(tmp_path / "s")
    Runs(store, cwd=tmp_path).start_run(spec=SPEC, run_id="one")
    ok = check_file_store(str(tmp_path / "s"))
    assert (ok.level, ok.detail.endswith("is writable (1 run)")) == ("OK", True)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["runs"]  # the probe is gone
    done = cli("doctor", "--store", str(blocker / "store"), cwd=tmp_path, env=_doctor_env(tmp_path))
    assert done.returncode == 1
    assert "FAIL  store" in done.stdout
    assert "-> fix: " in done.stdout


def test_doctor_postgres_unreachable_never_shows_the_password(tmp_path: Path) -> None:
    check = check_postgres("postgresql://someone:s3cret-pw@127.0.0.1:1/nodb")
    assert check.level == "FAIL"
    assert "postgresql://someone@127.0.0.1:1/nodb: cannot connect" in check.detail
    assert "s3cret-pw" not in check.line()
    project = tmp_path / "p"
    project.mkdir()
    (project / ".mcp.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "loopengt": {
                        "command": sys.executable,
                        "args": ["serve", "--store", "postgresql://someone:s3cret-pw@127.0.0.1:1/nodb"],
                    }
                }
            }
        )
    )
    checks, stores = check_clients(project)
    assert [c.level for c in checks] == ["OK"]
    assert stores == [("claude-code store", "postgresql://someone:s3cret-pw@127.0.0.1:1/nodb")]
    done = cli("doctor", cwd=project, env=_doctor_env(tmp_path))
    assert done.returncode == 1
    assert "FAIL  claude-code store" in done.stdout
    assert "s3cret-pw" not in done.stdout + done.stderr


def test_doctor_postgres_store_reports_the_schema_version(postgres_dsn: str) -> None:
    from loopengt_core.store.postgres import SCHEMA_VERSION, PostgresStore

    fresh = check_postgres(postgres_dsn)
    assert fresh.level == "OK"
    assert "no loopengt tables yet" in fresh.detail
    PostgresStore(postgres_dsn).close()  # the first start migrates
    ready = check_postgres(postgres_dsn)
    assert ready.level == "OK"
    assert f"schema version {SCHEMA_VERSION}" in ready.detail
