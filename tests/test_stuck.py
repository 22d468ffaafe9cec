"""Stuck loops (issue 16): attempts that repeat pause the run for a person with a diagnosis instead of
spending retries; `resume(hint=...)` makes the hint feedback to the next attempt. Real file stores, real
gate processes, a real git repository; a restart is a new FileStore and Runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from replay import assert_fold_equals_log, fresh

from loopengt_core.model.events import RetryScheduled
from loopengt_core.model.stuck import normalise
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

PY = sys.executable
# a gate that fails with the same message apart from a timestamp, a path and a duration
SAME = (
    "import datetime, sys; print('FAILED at', datetime.datetime.now(datetime.UTC).isoformat(), "
    "'in', sys.argv[1] + '/t_' + str(datetime.datetime.now().microsecond) + '.py', "
    "'after', datetime.datetime.now().microsecond % 97, 'ms: expected 1 got 0'); sys.exit(1)"
)
# a gate whose message changes each time: a count of failures that goes down
CHANGING = (
    "import pathlib, sys; p = pathlib.Path(sys.argv[1]) / 'count'; "
    "n = int(p.read_text()) if p.exists() else 10; p.write_text(str(n - 1)); "
    "print(n, 'tests failed'); sys.exit(1)"
)


def spec(gate: str, tmp_path: Path, stuck: Any = None, retries: int = 6) -> dict[str, Any]:
    """A one-step evaluator loop; `stuck` None leaves policy.stuck out (on by default)."""
    body: dict[str, Any] = {
        "name": "evaluated",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [{"name": "fix", "agent": "a", "verification_gates": ["tests"]}],
        "policy": {
            "retry": {"max_retries": retries, "initial_delay_seconds": 0},
            "verification_gates": [{"name": "tests", "command": [PY, "-c", gate, str(tmp_path)]}],
        },
    }
    if stuck is not None:
        body["policy"]["stuck"] = stuck
    return body


def make(tmp_path: Path, body: dict[str, Any], cwd: Path | None = None) -> Runs:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    if cwd is not None:
        (cwd / "loop.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    return Runs(FileStore(tmp_path / "store"), cwd=cwd or tmp_path)


def test_normalise_masks_times_paths_ids_and_hex_but_keeps_counts() -> None:
    one = normalise("FAILED at 2026-01-01T12:00:01.123Z in /tmp/a/b.py (run 3f2a9c1d, 0.5s): 3 failed")
    two = normalise("FAILED at 2026-01-02T08:10:59+00:00 in /var/x/y.py (run 9e8d7c6b, 12s): 3 failed")
    assert one == two
    assert normalise("3 failed") != normalise("2 failed")


@pytest.mark.parametrize("restart", [False, True], ids=["one-service", "restart-between-steps"])
def test_the_same_failure_three_times_pauses_as_stuck_and_a_hint_continues(
    tmp_path: Path, restart: bool
) -> None:
    runs = make(tmp_path, spec(SAME, tmp_path))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    for n in (1, 2):
        runs = fresh(runs, restart)
        answer = runs.step(run_id, f"fix#{n}", {"try": n})
        assert answer.status == "running"
        assert [t.task_id for t in answer.tasks] == [f"fix#{n + 1}"]
    runs = fresh(runs, restart)
    third = runs.step(run_id, "fix#3", {"try": 3})
    assert third.status == "paused"
    assert third.paused_for == "stuck"
    assert third.tasks == []
    error = third.error or ""
    assert "3 attempts in a row failed with the same failure (since attempt 1 at" in error
    assert "expected 1 got 0" in error  # the last feedback
    assert "--hint" in third.next_action
    assert {s.name: s.attempts for s in third.steps} == {"fix": 3}  # no retry spent
    assert [c.label for c in runs.list_checkpoints(run_id)] == ["paused: stuck"]
    assert_fold_equals_log(runs, run_id)

    runs = fresh(runs, restart)
    resumed = runs.resume(run_id, hint="the fixture file is stale; regenerate it")
    assert resumed.status == "running"
    assert [t.task_id for t in resumed.tasks] == ["fix#4"]
    assert resumed.tasks[0].attempt == 4
    assert (resumed.tasks[0].feedback or "").startswith(
        "A person's hint: the fixture file is stale; regenerate it"
    )
    assert "expected 1 got 0" in (resumed.tasks[0].feedback or "")
    runs = fresh(runs, restart)
    assert runs.step(run_id, "fix#4", {"try": 4}).status == "running"  # the streak starts afresh
    assert_fold_equals_log(runs, run_id)


def test_a_message_that_changes_each_time_is_not_stuck(tmp_path: Path) -> None:
    runs = make(tmp_path, spec(CHANGING, tmp_path))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    for n in range(1, 7):
        answer = runs.step(run_id, f"fix#{n}", {"try": n})
        assert answer.status == "running"
    assert answer.paused_for is None


def test_identical_outputs_pause_as_stuck(tmp_path: Path) -> None:
    runs = make(tmp_path, spec(CHANGING, tmp_path, {"same_failure": False}))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    runs.step(run_id, "fix#1", {"same": True})
    runs.step(run_id, "fix#2", {"same": True})
    answer = runs.step(run_id, "fix#3", {"same": True})
    assert answer.paused_for == "stuck"
    assert "submitted the same output" in (answer.error or "")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo.parent)}
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("restart", [False, True], ids=["one-service", "restart-between-steps"])
def test_a_git_run_whose_agent_changes_nothing_for_three_attempts_pauses_as_stuck(
    tmp_path: Path, restart: bool
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "mod.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("loop.yaml\ncount\n")
    body = spec(CHANGING, repo, {"same_failure": False, "same_output": False})
    body["workspace"] = "git"
    runs = make(tmp_path, body, cwd=repo)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    for n in (1, 2):
        runs = fresh(runs, restart)
        assert runs.step(run_id, f"fix#{n}", {"try": n}).status == "running"
    runs = fresh(runs, restart)
    third = runs.step(run_id, "fix#3", {"try": 3})
    assert third.paused_for == "stuck"
    assert "3 attempts in a row left the work tree unchanged" in (third.error or "")
    assert_fold_equals_log(runs, run_id)


def test_a_git_run_whose_agent_edits_each_attempt_is_not_stuck(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("loop.yaml\ncount\n")
    body = spec(CHANGING, repo, {"same_failure": False, "same_output": False})
    body["workspace"] = "git"
    runs = make(tmp_path, body, cwd=repo)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    for n in range(1, 6):
        (repo / "mod.py").write_text(f"x = {n}\n")
        assert runs.step(run_id, f"fix#{n}", {"try": n}).status == "running"


@pytest.mark.parametrize(
    ("policy", "attempts", "says"),
    [
        ({"stuck": False}, 4, "step 'fix' failed after 4 attempts"),  # off: every retry spent
        ({"retry": {"max_retries": 2}}, 3, "step 'fix' failed after 3 attempts"),  # no retry left
        ({"max_turns": 3}, 3, "max_turns 3 reached"),  # no turn left
    ],
    ids=["stuck-false", "no-retry-left", "no-turn-left"],
)
def test_the_run_fails_as_before_when_stuck_is_off_or_nothing_is_left_to_save(
    tmp_path: Path, policy: dict[str, Any], attempts: int, says: str
) -> None:
    body = spec(SAME, tmp_path, retries=3)
    body["policy"].update(policy)
    runs = make(tmp_path, body)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    for n in range(1, attempts + 1):
        answer = runs.step(run_id, f"fix#{n}", {"try": n})
    assert answer.status == "failed"
    assert answer.paused_for is None
    assert says in (answer.error or "")
    assert "run_paused" not in [e.type for e in runs.store.events(run_id)]
    retries = [e for e in runs.store.events(run_id) if isinstance(e, RetryScheduled)]
    assert all((e.compared is None) == (policy.get("stuck") is False) for e in retries)
    assert_fold_equals_log(runs, run_id)
