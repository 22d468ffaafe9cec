"""What recording the code's state costs per step: `Runs.step` with `workspace: git` beside `workspace: none`.

A temporary repository gets --files small files (default 10,000) in nested directories, committed, plus some
untracked files (recorded) and ignored files (not recorded); the store is `.loopengt/` inside it and listed in
its .gitignore, as in most users' repositories (left out of the recorded tree). Two runs of the same
self-looping spec work in it, one with `workspace: git` and one with `workspace: none`. Before each step the
"agent" edits one tracked file (outside the timing); the step is timed. The two runs are interleaved in blocks
so that background load hits both alike. Also timed on their own: `snapshot()` (the git part of a step) and
`git status` (for scale: any look at a work tree pays that scan). Beside wall time, each row gives the CPU
time of the git processes the call started (RUSAGE_CHILDREN): on a loaded machine wall time swings with other
work, the CPU time does not.

    python bench/git_workspace.py                      # 10,000 files, 100 steps of each
    python bench/git_workspace.py --files 50000 --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import AGAIN, loop_spec, median, ms, pct, quiet_logs

from loopengt_core.service import workspace
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

GOAL_MS = 50.0
ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True)


def make_repo(root: Path, files: int, untracked: int, ignored: int) -> None:
    """`files` small committed files, 100 to a directory, two levels deep; then untracked and ignored ones."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for key, value in (
        ("user.name", "bench"),
        ("user.email", "bench@localhost"),
        ("commit.gpgsign", "false"),
    ):
        git(root, "config", key, value)
    (root / ".gitignore").write_text("build/\n*.log\n.loopengt/\n")
    for i in range(files):
        folder = root / "src" / f"d{i // 1000:02d}" / f"e{(i // 100) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.py").write_text(f"VALUE_{i} = {i}\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench files")
    for i in range(untracked):
        (root / f"untracked{i}.txt").write_text(f"not committed yet {i}\n")
    (root / "build").mkdir()
    for i in range(ignored):
        (root / "build" / f"obj{i}.o").write_bytes(os.urandom(256))
    (root / "run.log").write_text("ignored\n" * 1000)


@dataclass
class Samples:
    """Per call: wall time, and CPU time of the git processes it started (what load cannot inflate)."""

    wall: list[float] = field(default_factory=list)  # ms
    git_cpu: list[float] = field(default_factory=list)  # ms

    def time(self, fn: Callable[[], Any]) -> None:
        cpu0, t0 = children_cpu(), time.perf_counter_ns()
        fn()
        self.wall.append(ms(time.perf_counter_ns() - t0))
        self.git_cpu.append((children_cpu() - cpu0) * 1000)

    def figures(self) -> dict[str, float]:
        w, c = self.wall, self.git_cpu
        return {"median_ms": median(w), "p90_ms": pct(w, 90), "max_ms": max(w), "git_cpu_ms": median(c)}

    def row(self, name: str) -> str:
        w, c = self.wall, self.git_cpu
        return f"  {name:28}{median(w):>8.1f}ms{pct(w, 90):>8.1f}ms{max(w):>8.1f}ms{median(c):>10.1f}ms"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drive(runs: Runs, repo: Path, steps: int, block: int) -> tuple[Samples, Samples]:
    """Two runs in the same repository, interleaved; before each step the agent edits one tracked file."""
    spec = loop_spec(2 * steps + 20)
    with_git = runs.start_run(spec={**spec, "workspace": "git"}).run_id
    without = runs.start_run(spec={**spec, "workspace": "none"}).run_id
    tasks = {with_git: 1, without: 1}
    samples = {with_git: Samples(), without: Samples()}
    edited = sorted((repo / "src").rglob("*.py"))[::20]
    edits = iter(range(10**9))

    def one_step(run_id: str, into: Samples) -> None:
        n = next(edits)
        path = edited[n % len(edited)]
        path.write_text(path.read_text() + f"# edit {n}\n")  # the agent's work, not timed
        task = f"work#{tasks[run_id]}"
        tasks[run_id] += 1
        into.time(lambda: runs.step(run_id, task, AGAIN))

    for _ in range(3):  # warm-up: imports, page cache
        one_step(with_git, Samples())
        one_step(without, Samples())
    while len(samples[with_git].wall) < steps:
        for run_id in (with_git, without):
            for _ in range(min(block, steps - len(samples[run_id].wall))):
                one_step(run_id, samples[run_id])
    return samples[with_git], samples[without]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000, help="committed files (default 10,000)")
    parser.add_argument("--untracked", type=int, default=20, help="untracked, not ignored files")
    parser.add_argument("--ignored", type=int, default=1_000, help="ignored files under build/")
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each run")
    parser.add_argument("--block", type=int, default=10, help="steps of one run before switching")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    quiet_logs()

    scratch = Path(tempfile.mkdtemp(prefix="loopengt-git-bench-"))
    try:
        repo = scratch / "repo"
        t0 = time.perf_counter()
        make_repo(repo, args.files, args.untracked, args.ignored)
        print(
            f"repository: {args.files:,} committed files, {args.untracked} untracked, {args.ignored:,} ignored "
            f"(made in {time.perf_counter() - t0:.1f} s); git {git_version()}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        runs = Runs(FileStore(repo / ".loopengt"), cwd=repo)
        with_git, without = drive(runs, repo, args.steps, args.block)
        alone, status = Samples(), Samples()
        for _ in range(30):
            alone.time(lambda: workspace.snapshot(repo, exclude=(".loopengt",)))
            status.time(
                lambda: subprocess.run(
                    ["git", "status", "--porcelain"], cwd=repo, env=ENV, check=True, capture_output=True
                )
            )

        print(f"\nper call ({args.steps} steps of each run, interleaved in blocks of {args.block}):")
        print(f"  {'':28}{'median':>10}{'p90':>10}{'max':>10}{'git CPU':>12}")
        print(without.row("step, workspace: none"))
        print(with_git.row("step, workspace: git"))
        print(alone.row("snapshot() alone"))
        print(status.row("git status (for scale)"))
        added = median(with_git.wall) - median(without.wall)
        cpu = median(with_git.git_cpu)
        print(
            f"\nadded per step by recording the workspace: {added:.1f} ms wall (median git - median none), "
            f"{cpu:.1f} ms of git CPU; goal <= {GOAL_MS:g} ms: {'met' if added <= GOAL_MS else 'NOT met'} "
            f"(wall), {'met' if cpu <= GOAL_MS else 'NOT met'} (CPU). Load average now {os.getloadavg()[0]:.1f}."
        )
        if args.json:
            out = {
                "files": args.files,
                "untracked": args.untracked,
                "ignored": args.ignored,
                "steps": args.steps,
                "block": args.block,
                "git": git_version(),
                "rows": {
                    "step, workspace: none": without.figures(),
                    "step, workspace: git": with_git.figures(),
                    "snapshot() alone": alone.figures(),
                    "git status (for scale)": status.figures(),
                },
                "added_ms": added,
                "added_git_cpu_ms": cpu,
                "goal_ms": GOAL_MS,
                "met": added <= GOAL_MS,
            }
            Path(args.json).write_text(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def git_version() -> str:
    done = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().removeprefix("git version ")


if __name__ == "__main__":
    sys.exit(main())
