"""`loopengt run --jobs N` against `--jobs 1`: a fan-out of N isolated branches (`isolation: worktree`)
whose agents each sleep --sleep seconds, then a join, in a fresh temporary git repository.

The figure is the ratio of the two wall times (same command, same machine): with the agents overlapping
it approaches N for long sleeps; the rest is the CLI's start, the worktrees (one `git worktree add` per
branch) and the merge.

    python bench/parallel_jobs.py                  # 3 branches, 2 s each
    python bench/parallel_jobs.py --branches 4 --sleep 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

AGENT = """\
import json, sys, time
task = json.load(sys.stdin)
if task["step"] != "join":
    time.sleep(float(sys.argv[1]))
    open(task["step"] + ".txt", "w").write("edited\\n")
print("{}")
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _repo(where: Path, branches: int) -> Path:
    repo = where / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "bench")
    _git(repo, "config", "user.email", "bench@example.com")
    for i in range(branches):
        (repo / f"b{i}.txt").write_text("start\n")
    (repo / ".gitignore").write_text(".loopengt/\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "start")
    return repo


def _spec(branches: int) -> dict[str, object]:
    names = [f"b{i}" for i in range(branches)]
    return {
        "name": "parallel-jobs",
        "pattern": "parallel_fan_out",
        "isolation": "worktree",
        "agents": [{"name": "coder"}],
        "steps": [
            *({"name": n, "agent": "coder"} for n in names),
            {"name": "join", "agent": "coder", "dependencies": names},
        ],
        "policy": {"max_concurrency": branches},
    }


def _timed(where: Path, branches: int, sleep: float, jobs: int) -> float:
    folder = where / f"jobs-{jobs}"
    folder.mkdir()
    repo = _repo(folder, branches)
    spec = folder / "loop.yaml"
    spec.write_text(yaml.safe_dump(_spec(branches)))
    agent = folder / "agent.py"
    agent.write_text(AGENT)
    command = [sys.executable, "-m", "loopengt_server", "run", str(spec), "--quiet", "--jobs", str(jobs)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--agent", f"{sys.executable} {agent} {sleep}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run --jobs {jobs} failed: {done.stdout}{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jobs-", dir=os.getcwd()) as scratch:
        serial = _timed(Path(scratch), args.branches, args.sleep, 1)
        parallel = _timed(Path(scratch), args.branches, args.sleep, args.branches)
    print(f"{args.branches} branches, agents sleeping {args.sleep:g} s each")
    print(f"  --jobs 1: {serial:.2f} s")
    print(f"  --jobs {args.branches}: {parallel:.2f} s")
    print(f"  ratio: {serial / parallel:.2f}x (ideal for the sleeps alone: {args.branches}x)")


if __name__ == "__main__":
    main()
