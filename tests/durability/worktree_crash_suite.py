"""Worktree crash suite: `loopengt run --agent` of a fan-out of three isolated branches and their join,
killed with SIGKILL right after each git operation that makes a worktree, commits a branch or merges,
then resumed: the run completes with every branch merged, `loopengt check` is clean, and after
`loopengt prune --worktrees` git lists no worktree but the user's and no branch but the join's.

Run explicitly (it is not collected by `python -m pytest`):

    python -m pytest tests/durability/worktree_crash_suite.py -q -s

The issue's two points get the most kills: a branch's worktree creation and the merge,
LOOPENGT_DURABILITY_WORKTREE_KILLS times each (default 20). The other git operations (the last branch's
worktree, a branch's commit, the join's worktree) get LOOPENGT_DURABILITY_WORKTREE_OTHER_KILLS each
(default 3), so CI spends its time where the issue asks; LOOPENGT_DURABILITY_WORKTREE_FULL=1 kills at
every operation the full number of times.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_worktrees import (
    CRASH_POINTS,
    repo,
)
from test_worktrees import (
    test_kill_9_at_a_git_operation_then_resume_completes_and_leaves_no_orphans as kill_and_resume,
)

KILLS = int(os.environ.get("LOOPENGT_DURABILITY_WORKTREE_KILLS", "20"))
OTHER_KILLS = (
    KILLS
    if os.environ.get("LOOPENGT_DURABILITY_WORKTREE_FULL") == "1"
    else int(os.environ.get("LOOPENGT_DURABILITY_WORKTREE_OTHER_KILLS", "3"))
)
# the "kill -9 during worktree creation and during the merge, 20 times each"
MAIN_POINTS = {("worktree add", 1), ("merge-tree", 2)}
ROUNDS = [
    pytest.param(crash_at, nth, round_, id=f"{crash_at.replace(' ', '-')}-{nth}-{round_}")
    for crash_at, nth in CRASH_POINTS
    for round_ in range(KILLS if (crash_at, nth) in MAIN_POINTS else OTHER_KILLS)
]

__all__ = ["repo"]  # the fixture, for pytest


@pytest.mark.parametrize(("crash_at", "nth", "round_"), ROUNDS)
def test_kill_9_at_each_git_operation(
    repo: Path, tmp_path: Path, crash_at: str, nth: int, round_: int
) -> None:
    kill_and_resume(repo, tmp_path, crash_at, nth)
