"""`loopengt run --agent CMD` as a person (a terminal) and a script (a pipe) see it.

A run that cannot start is never left `running` (so the stop hook never holds an agent for it); progress
shows while the agent works and a gate runs: a live line on a terminal, plain lines without control
characters in a pipe, only the result with --quiet. Each test runs the real `loopengt` script.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import LOOPENGT, run_cli, server_env

FIXTURES = Path(__file__).parent / "fixtures" / "hooks"
RECORDED_PROJECT = "/home/dev/project"


def spec(gate_seconds: float) -> dict[str, Any]:
    """One agent step whose command gate says something on stderr, sleeps, and passes."""
    return {
        "name": "slow",
        "goal": "Wait for a slow gate",
        "workspace": "none",
        "agents": [{"name": "writer"}],
        "steps": [{"name": "write", "agent": "writer", "verification_gates": ["slow_gate"]}],
        "policy": {
            "max_turns": 3,
            "verification_gates": [
                {
                    "name": "slow_gate",
                    "command": [
                        sys.executable,
                        "-c",
                        f"import sys, time; print('checking', file=sys.stderr); time.sleep({gate_seconds})",
                    ],
                }
            ],
        },
    }


AGENT = """
import json, sys, time
task = json.load(sys.stdin)
print("reading the task", file=sys.stderr, flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
print("writing the answer", file=sys.stderr, flush=True)
if len(sys.argv) > 2:
    print("it went wrong", file=sys.stderr)
    raise SystemExit(3)
print(json.dumps({"summary": "done"}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "agent.py").write_text(AGENT)
    (project / "loop.yaml").write_text(yaml.safe_dump(spec(0.2)))
    (project / "slow.yaml").write_text(yaml.safe_dump(spec(3)))
    return project


def runs_listed(project: Path) -> str:
    listed = run_cli("runs", cwd=project)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def stop_hook(project: Path) -> subprocess.CompletedProcess[str]:
    """`loopengt hook stop` with Claude Code's Stop payload, as the editor runs it in the project."""
    data = json.loads((FIXTURES / "claude-code" / "stop.json").read_text("utf-8"))
    data["cwd"] = str(project)
    done = subprocess.run(
        [str(LOOPENGT), "hook", "stop"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        cwd=project,
        env={**os.environ, **server_env()},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


# --- a run that cannot start ---------------------------------------------------------------------------


def test_an_agent_that_is_not_found_creates_no_run(project: Path) -> None:
    done = run_cli("run", "loop.yaml", "--agent", "nosuchagent --flag", cwd=project)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("loopengt: agent command not found: 'nosuchagent' is not on PATH")
    assert "fix --agent" in done.stderr
    assert "slow" not in runs_listed(project)
    assert not (project / ".loopengt").exists() or "running" not in runs_listed(project)
    assert stop_hook(project).stdout == ""

    missing_file = run_cli("run", "loop.yaml", "--agent", "./agent.sh", cwd=project)
    assert missing_file.returncode == 2
    assert "agent command not found: ./agent.sh" in missing_file.stderr
    (project / "agent.sh").write_text("#!/bin/sh\n")
    not_executable = run_cli("run", "loop.yaml", "--agent", "./agent.sh", cwd=project)
    assert not_executable.returncode == 2
    assert "chmod +x ./agent.sh" in not_executable.stderr
    unbalanced = run_cli("run", "loop.yaml", "--agent", "python3 'agent.py", cwd=project)
    assert unbalanced.returncode == 2
    assert "quote it as in a shell" in unbalanced.stderr
    assert "slow" not in runs_listed(project)


def test_an_unreadable_spec_creates_no_run(project: Path) -> None:
    done = run_cli("run", "missing.yaml", "--agent", f"{sys.executable} agent.py", cwd=project)
    assert done.returncode == 1
    assert done.stderr == "loopengt: missing.yaml: no such file\n"
    (project / "broken.yaml").write_text("name: [unclosed\n")
    broken = run_cli("run", "broken.yaml", "--agent", f"{sys.executable} agent.py", cwd=project)
    assert broken.returncode == 1
    assert broken.stderr.startswith("loopengt: broken.yaml: line 2, column 1: invalid YAML")
    assert broken.stderr.endswith("; see every problem with: loopengt validate broken.yaml\n")
    assert "running" not in runs_listed(project)


def test_an_agent_that_cannot_start_fails_its_run_and_the_hook_lets_the_agent_stop(project: Path) -> None:
    (project / "agent.bin").write_bytes(b"\x7fELF not really a program")  # found, executable, cannot start
    (project / "agent.bin").chmod(0o755)
    done = run_cli("run", "loop.yaml", "--agent", "./agent.bin", "--run-id", "doomed", cwd=project)
    assert done.returncode == 1
    assert "loopengt: agent command ./agent.bin cannot start" in done.stderr
    assert "run doomed failed. Fix --agent and start again" in done.stderr
    listed = runs_listed(project)
    assert "doomed" in listed
    assert "failed" in listed
    assert "running" not in listed
    shown = run_cli("show", "doomed", "--json", cwd=project)
    assert json.loads(shown.stdout)["error"].startswith("the agent command cannot start")
    assert stop_hook(project).stdout == ""  # allowed to stop: nothing to block for


# --- progress ------------------------------------------------------------------------------------------


def test_in_a_pipe_progress_is_plain_lines(project: Path) -> None:
    done = run_cli("run", "loop.yaml", "--agent", f"{sys.executable} agent.py 0", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    both = done.stdout + done.stderr
    assert "\x1b" not in both
    assert "\r" not in both
    lines = done.stdout.splitlines()
    assert lines[1] == "task write#1: step write, attempt 1, agent writer"
    assert lines[2].startswith("  agent: done (")
    assert lines[3:5] == ["    | reading the task", "    | writing the answer"]
    assert lines[5].startswith("  gate slow_gate: running ")
    assert lines[6].startswith("  gate slow_gate: pass (")
    assert lines[7].startswith("run slow-")
    assert lines[7].endswith(" s")
    assert " completed: 1 of 1 step done, 1 turn, gates 1 passed, 0 failed, " in lines[7]
    assert json.loads("\n".join(lines[8:])) == {"summary": "done"}


def test_a_failing_agent_shows_its_stderr(project: Path) -> None:
    done = run_cli("run", "loop.yaml", "--agent", f"{sys.executable} agent.py 0 fail", cwd=project)
    assert done.returncode == 1
    assert "  agent: failed (" in done.stdout
    assert "    | it went wrong\n" in done.stdout
    assert "run slow-" in done.stdout
    assert " failed: 0 of 1 step done, 3 turns, " in done.stdout
    assert "; reason: max_turns 3 reached before step 'write' passed" in done.stdout


def test_quiet_prints_only_the_result(project: Path) -> None:
    done = run_cli("run", "loop.yaml", "--quiet", "--agent", f"{sys.executable} agent.py 0", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith("run slow-")
    assert " completed: 1 of 1 step done, 1 turn, gates 1 passed, 0 failed, " in done.stdout
    failed = run_cli("run", "loop.yaml", "-q", "--agent", f"{sys.executable} agent.py 0 fail", cwd=project)
    assert failed.returncode == 1
    assert failed.stdout.count("\n") == 1
    assert "failed" in failed.stdout
    assert "reason: max_turns 3 reached" in failed.stdout
    refused = run_cli("run", "loop.yaml", "-q", "--agent", "nosuchagent", cwd=project)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "agent command not found" in refused.stderr


def read_terminal(argv: list[str], cwd: Path, timeout: float = 60) -> tuple[int, list[tuple[float, str]]]:
    """Run `argv` on a pseudo-terminal; its exit code and what it drew, chunk by chunk with the time."""
    leader, follower = pty.openpty()
    env = {**os.environ, **server_env(), "TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(argv, cwd=cwd, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
            elif process.poll() is not None:
                break
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return process.wait(timeout=10), chunks


def test_on_a_terminal_a_live_line_shows_the_agent_and_the_running_gate_with_its_output(
    project: Path,
) -> None:
    code, chunks = read_terminal(
        [str(LOOPENGT), "run", "slow.yaml", "--agent", f"{sys.executable} agent.py 1"], project
    )
    drawn = "".join(text for _, text in chunks)
    assert code == 0, drawn
    assert "\x1b[" in drawn  # drawn in place, with colour
    assert "step write · attempt 1 · agent writer 0:0" in drawn
    assert "│ reading the task" in drawn  # the agent's stderr under the live line, while it works
    gate_frames = [at for at, text in chunks if "gate slow_gate 0:0" in text]
    passed = [at for at, text in chunks if "slow_gate: \x1b[32mpass" in text or "slow_gate: pass" in text]
    assert gate_frames
    assert passed
    # the gate's name is on the live line while it runs: seconds before it reports its result
    assert passed[0] - gate_frames[0] >= 1.5
    assert "gate slow_gate 0:02" in drawn
    # ... with the gate's output so far under it
    assert any("gate slow_gate 0:0" in text and "│ checking" in text for _, text in chunks)
    assert "completed: 1 of 1 step done, 1 turn, gates 1 passed, 0 failed" in drawn


def fan_out(gate_seconds: float) -> dict[str, Any]:
    """Two parallel branches (no worktrees: --jobs works on any open tasks), each with the slow gate."""
    branches = spec(gate_seconds)
    branches["name"] = "branches"
    branches["pattern"] = "parallel_fan_out"
    branches["steps"] = [
        {"name": n, "agent": "writer", "verification_gates": ["slow_gate"]} for n in ("left", "right")
    ]
    branches["policy"]["max_concurrency"] = 2
    return branches


def test_with_jobs_plain_lines_name_each_branch(project: Path) -> None:
    (project / "branches.yaml").write_text(yaml.safe_dump(fan_out(0.2)))
    done = run_cli(
        "run", "branches.yaml", "--jobs", "2", "--agent", f"{sys.executable} agent.py 0.5", cwd=project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout
    lines = done.stdout.splitlines()
    for name in ("left", "right"):
        assert f"task {name}#1: step {name}, attempt 1, agent writer" in lines
        assert f"  agent ({name}): running, attempt 1, in {project}" in lines
        assert any(line.startswith(f"  agent ({name}): done (") for line in lines)
        assert any(line.startswith(f"  gate slow_gate ({name}): running ") for line in lines)
        assert any(line.startswith(f"  gate slow_gate ({name}): pass (") for line in lines)
    # both agents started before either returned: each branch's line as it happens
    started = max(lines.index(f"  agent ({n}): running, attempt 1, in {project}") for n in ("left", "right"))
    assert started < min(i for i, line in enumerate(lines) if line.startswith("  agent (") and "done" in line)
    assert " completed: 2 of 2 steps done, 2 turns, gates 2 passed, 0 failed, " in done.stdout


def test_with_jobs_the_live_lines_show_each_running_branch(project: Path) -> None:
    (project / "branches.yaml").write_text(yaml.safe_dump(fan_out(2)))
    code, chunks = read_terminal(
        [str(LOOPENGT), "run", "branches.yaml", "--jobs", "2", "--agent", f"{sys.executable} agent.py 1.5"],
        project,
    )
    drawn = "".join(text for _, text in chunks)
    assert code == 0, drawn
    assert "2 branches at once" in drawn
    # one line per running branch, both in the same frame, each with its own step, attempt, agent and time
    assert any(
        "step left · attempt 1 · agent writer 0:01" in text
        and "step right · attempt 1 · agent writer 0:01" in text
        for _, text in chunks
    ), drawn
    # a branch's gate on its own line while the other branch waits
    assert any(
        "step left · attempt 1 · gate slow_gate 0:01" in text and "step right · attempt 1 · waiting" in text
        for _, text in chunks
    ), drawn
    assert "completed: 2 of 2 steps done, 2 turns, gates 2 passed, 0 failed" in drawn


def test_a_commands_output_can_be_read_while_it_runs(tmp_path: Path) -> None:
    """`run_command(on_start=...)`: what the live line reads; it sees output before the command ends."""
    from loopengt_core.service.commands import Peek, run_command

    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "print('first', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('second')\n"
    )
    peeks: list[Peek] = []
    seen: list[str | None] = []

    def watch(peek: Peek) -> None:
        peeks.append(peek)

        def poll() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                text = peek()
                if text and "first" in text:
                    seen.append(text)
                    break
                time.sleep(0.02)
            go.touch()

        threading.Thread(target=poll, daemon=True).start()

    result = run_command([sys.executable, "-c", script], cwd=tmp_path, timeout_seconds=30, on_start=watch)
    assert result.exit_code == 0
    assert result.output == "first\nsecond\n"  # reading did not move where the command wrote
    assert seen == ["first\n"]
    assert peeks[0]() is None  # ended: the file is closed
