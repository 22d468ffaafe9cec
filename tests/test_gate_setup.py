"""A gate or command step whose program cannot be found or started is a setup problem, not the agent's.

The run pauses for a person with the reason and the fix; the agent's submission is kept and no attempt
is spent; once the program is there, `resume` runs the command again and the run goes on. A program that
starts and fails (a shell's exit 127 included) stays an ordinary failed check. Real stores, real
processes: the missing programs are names in a folder put on PATH, created when the test "fixes" it.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_helpers import ok, stdio_params, step, trace_events

from loopengt_core.engine.view import run_view
from loopengt_core.model.events import event_data
from loopengt_core.model.state import project_run
from loopengt_core.service.commands import run_command
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore
from loopengt_server.doctor import check_programs
from loopengt_server.hooks import run_stop_hook

LOOPENGT = Path(sys.executable).with_name("loopengt")
GATE = "lgt-missing-gate-program"
STEP = "lgt-missing-step-program"

SPEC: dict[str, Any] = {
    "name": "setup-errors",
    "goal": "write and check",
    "pattern": "sequential",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "write", "agent": "a", "verification_gates": ["check"]},
        {"name": "final", "run": [STEP, "--quick"], "dependencies": ["write"]},
    ],
    "policy": {
        "max_turns": 5,
        "retry": {"max_retries": 1, "initial_delay_seconds": 0},
        "verification_gates": [{"name": "check", "command": [GATE], "on_failure": "retry"}],
    },
}


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder first on PATH: a program "installed" by the test goes there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder


def install(folder: Path, name: str, body: str = "echo ok", *, mode: int = 0o755) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


@pytest.fixture
def runs(store: FileStore, tmp_path: Path) -> Runs:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return Runs(store, cwd=tmp_path)


def types_of(store: FileStore, run_id: str) -> list[str]:
    return [e.type for e in store.events(run_id)]


def assert_replays(runs: Runs, store: FileStore, run_id: str) -> None:
    """The live state equals the fold of the log, and a fresh service loads the same run."""
    live = runs.get_run(run_id)
    folded = project_run(store.events(run_id))
    assert run_view(folded) == live
    assert Runs(FileStore(store.root), cwd=runs.cwd).get_run(run_id) == live


def test_a_missing_gate_program_pauses_the_run_and_resume_continues_it(
    runs: Runs, store: FileStore, bin_dir: Path
) -> None:
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    answer = runs.step(run_id, "write#1", {"summary": "done"})
    assert answer.accepted is True
    assert answer.status == "paused"
    assert answer.paused_for == "setup"
    assert answer.tasks == []
    assert answer.gate_results == []  # the gate neither passed nor failed: it never ran
    assert f"gate 'check' of step 'write' cannot run: program `{GATE}` was not found on PATH" in (
        answer.error or ""
    )
    assert f"loopengt resume {run_id}" in answer.next_action
    assert "not the agent's" in answer.next_action
    attempts = {s.name: s.attempts for s in answer.steps}
    assert attempts == {"write": 1, "final": 0}
    finished = [e for e in store.events(run_id) if e.type == "command_finished"]
    assert event_data(finished[-1])["setup_error"].startswith(f"program `{GATE}` was not found on PATH")
    assert event_data(finished[-1])["exit_code"] == 127
    assert "gate_failed" not in types_of(store, run_id)
    assert "retry_scheduled" not in types_of(store, run_id)
    assert_replays(runs, store, run_id)

    # resumed before the fix: it pauses again, still without spending an attempt
    again = runs.resume(run_id)
    assert again.status == "paused"
    assert {s.name: s.attempts for s in again.steps} == attempts
    assert again.tasks == []
    assert_replays(runs, store, run_id)

    install(bin_dir, GATE)
    install(bin_dir, STEP)
    fixed = runs.resume(run_id)
    assert fixed.status == "completed", fixed.next_action
    assert fixed.error is None
    assert fixed.final_output["exit_code"] == 0  # the command step's result
    assert {s.name: s.attempts for s in fixed.steps} == {"write": 1, "final": 1}
    kinds = types_of(store, run_id)
    assert kinds.count("output_submitted") == 1  # the agent's one submission carried the run through
    assert kinds.count("gate_passed") == 1
    assert kinds.count("run_resumed") == 2
    assert_replays(runs, store, run_id)


def test_a_missing_command_step_program_pauses_the_run_and_resume_continues_it(
    runs: Runs, store: FileStore, bin_dir: Path
) -> None:
    install(bin_dir, GATE)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    answer = runs.step(run_id, "write#1", {"summary": "done"})
    assert answer.status == "paused"
    assert [g.passed for g in answer.gate_results] == [True]
    assert f"command step 'final' cannot run: program `{STEP}` was not found on PATH" in (answer.error or "")
    assert {s.name: (s.status, s.attempts) for s in answer.steps} == {
        "write": ("completed", 1),
        "final": ("running", 1),
    }
    assert_replays(runs, store, run_id)
    install(bin_dir, STEP, 'echo "step ran with $1"')
    fixed = runs.resume(run_id)
    assert fixed.status == "completed", fixed.next_action
    assert {s.name: s.attempts for s in fixed.steps} == {"write": 1, "final": 1}
    assert "step ran with --quick" in fixed.final_output["output"]
    assert_replays(runs, store, run_id)


def test_a_paused_run_keeps_its_open_tasks_and_lets_the_stop_hook_go(
    tmp_path: Path, store: FileStore, bin_dir: Path
) -> None:
    """Parallel branches: one branch's gate cannot run; the other branch's task stays open and accepted."""
    spec = {
        "name": "fan",
        "pattern": "parallel_fan_out",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "left", "agent": "a", "verification_gates": ["check"]},
            {"name": "right", "agent": "a"},
        ],
        "policy": {"verification_gates": [{"name": "check", "command": [GATE]}]},
    }
    (tmp_path / "fan.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    runs = Runs(store, cwd=tmp_path)
    run_id = runs.start_run(spec_path="fan.yaml").run_id
    paused = runs.step(run_id, "left#1", "left done")
    assert paused.status == "paused"
    assert [t.task_id for t in paused.tasks] == ["right#1"]
    assert "Meanwhile the open tasks (right#1) can still be submitted" in paused.next_action

    payload = json.dumps({"hook_event_name": "Stop", "cwd": str(tmp_path), "session_id": "s"}).encode()
    out, err = io.StringIO(), io.StringIO()
    assert run_stop_hook(io.BytesIO(payload), out, err, store=str(store.root), max_loops=5) == 0
    assert out.getvalue().strip() == "", out.getvalue()  # paused: a person's turn, the agent may stop

    still = runs.step(run_id, "right#1", "right done")
    assert still.status == "paused"
    assert still.tasks == []
    install(bin_dir, GATE)
    assert runs.resume(run_id).status == "completed"
    assert_replays(runs, store, run_id)


def test_an_approval_while_paused_comes_back_after_resume(
    tmp_path: Path, store: FileStore, bin_dir: Path
) -> None:
    spec = {
        "name": "fan-approval",
        "pattern": "parallel_fan_out",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "left", "agent": "a", "verification_gates": ["check"]},
            {"name": "right", "agent": "a", "verification_gates": ["sign"]},
        ],
        "policy": {
            "verification_gates": [{"name": "check", "command": [GATE]}, {"name": "sign", "approval": True}]
        },
    }
    (tmp_path / "fan.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    runs = Runs(store, cwd=tmp_path)
    run_id = runs.start_run(spec_path="fan.yaml").run_id
    assert runs.step(run_id, "left#1", "l").status == "paused"
    assert runs.step(run_id, "right#1", "r").status == "paused"  # the approval waits too
    assert runs.resume(run_id).status == "paused"
    install(bin_dir, GATE)
    assert runs.resume(run_id).status == "waiting_approval"
    assert runs.approve(run_id).status == "completed"
    assert_replays(runs, store, run_id)


def test_what_counts_as_cannot_start(tmp_path: Path, bin_dir: Path) -> None:
    def result(argv: list[str]) -> Any:
        return run_command(argv, cwd=tmp_path, timeout_seconds=30)

    def problem(argv: list[str]) -> str:
        found = result(argv).setup_error
        assert found is not None, argv
        return str(found)

    assert result(["no-such-program-lgt"]).exit_code == 127
    assert "program `no-such-program-lgt` was not found on PATH" in problem(["no-such-program-lgt"])
    install(bin_dir, "not-executable", mode=0o644)
    assert "permission denied" in problem(["not-executable"])
    install(tmp_path, "script.sh", mode=0o644)
    assert "chmod +x ./script.sh" in problem(["./script.sh"])
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n", encoding="utf-8")
    plain.chmod(plain.stat().st_mode | stat.S_IXUSR)
    assert "exec format error" in problem(["./plain"])
    gone = tmp_path / "gone.sh"
    gone.write_text("#!/nonexistent/interpreter\necho hi\n", encoding="utf-8")
    gone.chmod(0o755)
    assert "#! line (/nonexistent/interpreter) was not found" in problem(["./gone.sh"])
    assert "does not exist" in problem(["./nowhere.sh"])

    # a program that started: its failures are the check's, even a shell's "not found"
    shell = result(["sh", "-c", "no-such-program-lgt"])
    assert shell.exit_code == 127
    assert shell.setup_error is None
    assert result(["sh", "-c", "exit 3"]).setup_error is None


def test_a_shell_127_is_a_failed_check_fed_back_to_the_agent(
    runs: Runs, store: FileStore, tmp_path: Path
) -> None:
    spec = dict(SPEC, steps=[SPEC["steps"][0]])
    spec["policy"] = dict(
        SPEC["policy"], verification_gates=[{"name": "check", "command": ["sh", "-c", "no-such-program-lgt"]}]
    )
    (tmp_path / "shell.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    run_id = runs.start_run(spec_path="shell.yaml").run_id
    answer = runs.step(run_id, "write#1", "x")
    assert answer.status == "running"
    assert [g.passed for g in answer.gate_results] == [False]
    assert [t.task_id for t in answer.tasks] == ["write#2"]


# --- doctor: the programs a run would start, checked before the run ------------------------------


def test_doctor_names_each_missing_program_with_its_fix(tmp_path: Path, bin_dir: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    install(bin_dir, GATE)
    checks = check_programs(Path("loop.yaml"), "no-such-agent-lgt --flag", cwd=tmp_path)
    lines = [c.line() for c in checks]
    assert [c.level for c in checks] == ["OK", "FAIL", "FAIL"], lines
    assert GATE in checks[0].detail
    assert f"step 'final' runs `{STEP}`, which is not on PATH" in lines[1]
    assert f"fix: install {STEP} or put its folder on PATH, or change the step's run in loop.yaml" in lines[1]
    assert "the agent runs `no-such-agent-lgt`, which is not on PATH" in lines[2]
    assert "or change --agent" in lines[2]

    install(bin_dir, STEP)
    assert [c.level for c in check_programs(Path("loop.yaml"), cwd=tmp_path)] == ["OK"]
    assert check_programs(None, cwd=tmp_path) == []
    broken = check_programs(tmp_path / "nothing.yaml", cwd=tmp_path)
    assert [c.level for c in broken] == ["FAIL"]
    assert "no such file" in broken[0].detail


def test_doctor_exits_non_zero_for_a_missing_gate_program(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    done = subprocess.run(
        [str(LOOPENGT), "doctor", "--store", str(tmp_path / "store")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "CODEX_HOME": str(tmp_path / "codex")},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"gate 'check' runs `{GATE}`, which is not on PATH" in done.stdout


# --- the same over MCP: a real server subprocess and the SDK client ----------------------------------


@pytest.mark.anyio
async def test_over_mcp_the_run_pauses_keeps_the_submission_and_resume_continues(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    params = stdio_params(
        tmp_path / "store", tmp_path, env={"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}
    )
    async with Client(params, mode="auto", read_timeout_seconds=60) as client:
        view = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))
        run_id = view["run_id"]
        answer = ok(await step(client, run_id, "write#1", {"summary": "done"}))
        assert answer["accepted"] is True
        assert answer["status"] == "paused"
        assert answer["tasks"] == []
        assert f"program `{GATE}` was not found on PATH" in answer["error"]
        assert f"loopengt resume {run_id}" in answer["next_action"]
        assert {s["name"]: s["attempts"] for s in answer["steps"]} == {"write": 1, "final": 0}
        # the same submission again: the same answer, nothing appended
        before = await trace_events(client, run_id)
        assert ok(await step(client, run_id, "write#1", {"summary": "done"}))["status"] == "paused"
        assert await trace_events(client, run_id) == before

        install(folder, GATE)
        install(folder, STEP)
        done = ok(await client.call_tool("resume", {"run_id": run_id}))
        assert done["status"] == "completed", done["next_action"]
        assert {s["name"]: s["attempts"] for s in done["steps"]} == {"write": 1, "final": 1}
        kinds = [e["type"] for e in await trace_events(client, run_id)]
        assert kinds.count("output_submitted") == 1
        assert "gate_failed" not in kinds
    store = FileStore(tmp_path / "store")
    assert run_view(project_run(store.events(run_id))).status == "completed"


# --- property: whatever the order of submissions, breakages, fixes and resumes ---------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("program"), st.sampled_from(["remove", "install", "not-executable"])),
        st.tuples(st.just("resume")),
        st.tuples(st.just("approve"), st.booleans()),
    ),
    max_size=25,
)


def _fan_spec(program: Path) -> dict[str, Any]:
    return {
        "name": "paused-prop",
        "pattern": "parallel_fan_out",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "left", "agent": "a", "verification_gates": ["ok", "check"]},
            {"name": "right", "agent": "a", "verification_gates": ["check", "sign"]},
            {"name": "tail", "run": [str(program)], "dependencies": ["left", "right"]},
        ],
        "policy": {
            "max_turns": 12,
            "fail_fast": False,
            "retry": {"max_retries": 2, "initial_delay_seconds": 0},
            "verification_gates": [
                {"name": "ok", "condition": "output.ok == `true`"},
                {"name": "check", "command": [str(program)]},
                {"name": "sign", "approval": True},
            ],
        },
    }


def _same_after_replay(runs: Runs, store: FileStore, run_id: str) -> None:
    live = runs.kernel.read(run_id).state
    assert project_run(store.events(run_id)).model_dump() == live.model_dump()
    fresh = Runs(FileStore(store.root), cwd=runs.cwd, allow_inline_commands=True)
    assert fresh.kernel.read(run_id).state.model_dump() == live.model_dump()
    if live.status == "paused":
        assert live.error
        assert all(c.runner is None for c in live.commands.values() if c.setup_error)
    setup = [
        e for e in store.events(run_id) if e.type == "command_finished" and event_data(e).get("setup_error")
    ]
    feedback = [str(event_data(e).get("feedback")) for e in store.events(run_id) if e.type == "gate_failed"]
    assert not any("cannot start" in f or "not found on PATH" in f for f in feedback)
    assert len(setup) <= sum(1 for e in store.events(run_id) if e.type == "command_finished")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS)
def test_setup_errors_never_spend_attempts_and_replay_to_the_same_state(
    actions: list[tuple[Any, ...]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        program = root / "check-program"
        store = FileStore(root / "store")
        runs = Runs(store, cwd=root, allow_inline_commands=True)
        run_id = runs.start_run(spec=_fan_spec(program)).run_id
        for action in actions:
            view = runs.get_run(run_id)
            kind = action[0]
            if kind == "submit" and view.tasks:
                task = view.tasks[action[1] % len(view.tasks)]
                issued = sum(1 for e in store.events(run_id) if e.type == "task_issued")
                answer = runs.step(run_id, task.task_id, {"ok": action[2]})
                assert answer.accepted
                if action[2]:  # passes `ok`, and the program exits 0 whenever it starts: no retry, ever
                    again = [e for e in store.events(run_id) if e.type == "task_issued"]
                    assert all(event_data(e)["step"] != task.step for e in again[issued:])
            elif kind == "program":
                program.unlink(missing_ok=True)
                if action[1] != "remove":
                    program.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
                    program.chmod(0o755 if action[1] == "install" else 0o644)
            elif kind == "resume" and view.status not in ("completed", "failed", "cancelled"):
                runs.resume(run_id)
            elif kind == "approve" and view.status == "waiting_approval":
                runs.approve(run_id, approved=action[1])
            _same_after_replay(runs, store, run_id)
        # then a person fixes the setup and the agent does good work: the run always ends
        program.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        program.chmod(0o755)
        for _ in range(30):
            view = runs.get_run(run_id)
            if view.status in ("completed", "failed", "cancelled"):
                break
            if view.status == "paused":
                runs.resume(run_id)
            elif view.status == "waiting_approval":
                runs.approve(run_id)
            else:
                assert view.tasks, view.next_action
                runs.step(run_id, view.tasks[0].task_id, {"ok": True})
            _same_after_replay(runs, store, run_id)
        final = runs.get_run(run_id).status
        assert final in ("completed", "failed")
        paused = any(
            event_data(e).get("setup_error") for e in store.events(run_id) if e.type == "command_finished"
        )
        event(f"ended {final}" + (" after a pause" if paused else ""))
        store.close()


def test_headless_run_stops_at_the_pause_and_run_resume_finishes(tmp_path: Path, bin_dir: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    (tmp_path / "agent.sh").write_text('echo \'{"summary": "done"}\'\n', encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LOOPENGT), "run", *args, "--agent", "sh agent.sh", "--store", "store"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "300"},
        )

    paused = run("loop.yaml")
    assert paused.returncode == 1, paused.stdout + paused.stderr
    assert "paused" in paused.stdout
    assert f"program `{GATE}` was not found on PATH" in paused.stdout
    [run_id] = [p.name for p in (tmp_path / "store" / "runs").iterdir() if not p.name.startswith(".")]
    assert f"continue with: loopengt run --resume {run_id}" in paused.stdout
    install(bin_dir, GATE)
    install(bin_dir, STEP)
    done = run("--resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run {run_id} completed" in done.stdout
