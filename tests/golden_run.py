"""A fixed, scripted set of runs that writes every event type, for the golden store tests.

`drive(base)` builds, under `base`, a git repository, a folder of programs put on PATH and a file store
(`base/store`), and drives five runs through `Runs` with a hand-moved clock and fixed ids and seeds, so
two drives write the same logs except for what no clock fixes: the host and pid of a command's runner,
a command's measured duration and the temporary folder `base` (it names the workspace roots). It was
run once with loopengt 0.2.0's code to write tests/fixtures/store_v0_2_0 (`python tests/golden_run.py
DIR`); test_golden_store.py drives it again with the current code and compares.

The runs: `golden-main` (expiry, schema and condition gates, a command gate whose program is missing
then fixed, an approval, a command step, a checkpoint; left waiting on `review#1`), `golden-rejected`
(an approval refused, the step and the run failed), `golden-files` (a git workspace: a checkpoint that
keeps the files, drift accepted on resume, a fork from the checkpoint, then cancelled) and
`golden-done` (completed).
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from clock import Clock

from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

CHECK = "lgt-golden-check"
MAIN, REJECTED, FILES, DONE = "golden-main", "golden-rejected", "golden-files", "golden-done"
GIT_DATE = "2026-01-01T12:00:00+00:00"

MAIN_SPEC: dict[str, Any] = {
    "name": "golden",
    "goal": "exercise every event",
    "pattern": "sequential",
    "context": {"lang": "en"},
    "agents": [{"name": "writer", "timeout_seconds": 60}],
    "steps": [
        {
            "name": "draft",
            "agent": "writer",
            "prompt_template": "Draft it in {lang}. {feedback}",
            "output_schema": {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}},
            },
            "verification_gates": ["long_enough", "check", "sign"],
        },
        {"name": "build", "run": ["sh", "-c", "echo built"]},
        {"name": "review", "agent": "writer"},
    ],
    "policy": {
        "max_turns": 20,
        "retry": {"max_retries": 3, "backoff": "fixed", "initial_delay_seconds": 0},
        "verification_gates": [
            {"name": "long_enough", "condition": "length(output.text) > `3`", "feedback": "too short"},
            {"name": "check", "command": [CHECK], "timeout_seconds": 60},
            {"name": "sign", "approval": True, "prompt": "Sign the draft?"},
        ],
    },
}

REJECTED_SPEC: dict[str, Any] = {
    "name": "golden-reject",
    "agents": [{"name": "writer"}],
    "steps": [{"name": "only", "agent": "writer", "verification_gates": ["sign"]}],
    "policy": {
        "retry": {"max_retries": 0},
        "verification_gates": [{"name": "sign", "approval": True}],
    },
}

FILES_SPEC: dict[str, Any] = {
    "name": "golden-files",
    "workspace": "git",
    "agents": [{"name": "coder"}],
    "steps": [{"name": "one", "agent": "coder"}, {"name": "two", "agent": "coder"}],
}

DONE_SPEC: dict[str, Any] = {
    "name": "golden-done",
    "goal": "finish",
    "agents": [{"name": "a"}],
    "steps": [{"name": "only", "agent": "a"}],
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True)


@contextmanager
def _fixed(base: Path) -> Iterator[None]:
    """Fixed run seeds and fork ids, fixed git dates (commit ids), `base/bin` first on PATH; undone afterwards."""
    saved_env = {k: os.environ.get(k) for k in ("PATH", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")}
    saved = secrets.randbits, secrets.token_hex
    numbers = itertools.count(1)
    secrets.randbits = lambda k: 4242  # type: ignore[assignment]
    secrets.token_hex = lambda nbytes=None: f"{next(numbers):0{2 * (nbytes or 16)}x}"  # type: ignore[assignment]
    os.environ["PATH"] = f"{base / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["GIT_AUTHOR_DATE"] = os.environ["GIT_COMMITTER_DATE"] = GIT_DATE
    try:
        yield
    finally:
        secrets.randbits, secrets.token_hex = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _repo(base: Path) -> Path:
    repo = base / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for key, value in (
        ("user.name", "Golden"),
        ("user.email", "golden@example.com"),
        ("commit.gpgsign", "false"),
    ):
        _git(repo, "config", key, value)
    (repo / "notes.txt").write_text("first\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "start")
    (repo / "files.yaml").write_text(yaml.safe_dump(FILES_SPEC))
    return repo


def _main(runs: Runs, clock: Clock, base: Path) -> None:
    runs.start_run(spec_path=str(base / "main.yaml"), inputs={}, run_id=MAIN)  # draft#1, expires in 60 s
    clock.advance(61)
    runs.pump(MAIN)  # task_expired, retry_scheduled, draft#2
    clock.advance(5)
    runs.step(MAIN, "draft#2", {"text": 3})  # the schema gate fails: draft#3
    clock.advance(5)
    runs.step(MAIN, "draft#3", {"text": "a long draft"})  # gates pass; the check's program is missing
    program = base / "bin" / CHECK
    program.write_text("#!/bin/sh\necho checked\n")
    program.chmod(0o755)
    clock.advance(5)
    runs.resume(MAIN)  # the check runs again, passes; the approval is asked for
    clock.advance(5)
    runs.approve(MAIN, approved=True, comment="fine", by="golden")  # build runs; review#1 issued
    clock.advance(5)
    runs.checkpoint(MAIN, "before review")


def _rejected(runs: Runs, clock: Clock) -> None:
    runs.start_run(spec=REJECTED_SPEC, run_id=REJECTED)
    clock.advance(2)
    runs.step(REJECTED, "only#1", {"answer": 42})
    clock.advance(2)
    runs.approve(REJECTED, approved=False, comment="no", by="golden")


def _files(runs: Runs, clock: Clock, repo: Path) -> str:
    runs.start_run(spec_path=str(repo / "files.yaml"), run_id=FILES)
    (repo / "notes.txt").write_text("second\n")
    clock.advance(3)
    runs.step(FILES, "one#1", {"done": "one"})
    clock.advance(3)
    point = runs.checkpoint(FILES, "after one")
    (repo / "notes.txt").write_text("changed outside\n")
    clock.advance(3)
    runs.resume(FILES, accept_drift=True)
    clock.advance(3)
    fork = runs.resume(FILES, point.checkpoint_id)
    clock.advance(3)
    runs.cancel_run(FILES, "enough")
    return fork.run_id


def _done(runs: Runs, clock: Clock) -> None:
    runs.start_run(spec=DONE_SPEC, run_id=DONE)
    clock.advance(1)
    runs.step(DONE, "only#1", {"result": [1, 2, 3], "note": None})


def drive(base: Path) -> dict[str, str]:
    """Write the golden runs under `base/store`; returns their ids by role (`fork` is the forked run)."""
    (base / "bin").mkdir(parents=True)
    (base / "main.yaml").write_text(yaml.safe_dump(MAIN_SPEC))
    clock = Clock()
    with _fixed(base):
        repo = _repo(base)
        runs = Runs(FileStore(base / "store"), cwd=base, clock=clock, snapshot_every=5)
        _main(runs, clock, base)
        _rejected(runs, clock)
        runs_in_repo = Runs(FileStore(base / "store"), cwd=repo, clock=clock, snapshot_every=5)
        fork = _files(runs_in_repo, clock, repo)
        _done(runs, clock)
    return {"main": MAIN, "rejected": REJECTED, "files": FILES, "fork": fork, "done": DONE}


if __name__ == "__main__":
    print(drive(Path(sys.argv[1]).resolve()))
