"""Worktree crash suite: `loopengt run --agent` of a fan-out of three isolated branches and their join,
killed with SIGKILL right after each git operation that makes a worktree, commits a branch or merges,
then resumed: the run completes with every branch merged, `loopengt check` is clean, and after
`loopengt prune --worktrees` git lists no worktree but the user's and no branch but the join's.

Run explicitly (it is not collected by `python -m pytest`):

    python -m pytest tests/durability/worktree_crash_suite.py -q -s

LOOPENGT_DURABILITY_WORKTREE_KILLS sets the kills per git operation (default 20).
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

__all__ = ["repo"]  # the fixture, for pytest


@pytest.mark.parametrize("round_", range(KILLS))
@pytest.mark.parametrize(("crash_at", "nth"), CRASH_POINTS)
def test_kill_9_at_each_git_operation(
    repo: Path, tmp_path: Path, crash_at: str, nth: int, round_: int
) -> None:
    kill_and_resume(repo, tmp_path, crash_at, nth)
