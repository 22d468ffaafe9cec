"""What the service does with recorded trees: their differences, checkpoint commits, fork worktrees."""

from __future__ import annotations

import os
from pathlib import Path

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.service.workspace.gitrun import IDENTITY, git


def changed_paths(root: str | Path, from_tree: str, to_tree: str) -> list[str]:
    """Paths (from the top of the work tree) that differ between two trees: added, changed, deleted."""
    if from_tree == to_tree:
        return []
    out = git(root, "diff-tree", "-r", "--name-only", "-z", "--no-renames", from_tree, to_tree).stdout
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def diff(root: str | Path, from_tree: str, to_tree: str, *, stat: bool = False) -> str:
    """`git diff` between two trees, as text (no pager, no colour, no external diff tool)."""
    args = ["diff", "--no-ext-diff", "--no-color", *(["--stat"] if stat else []), from_tree, to_tree]
    return git(root, *args).stdout.decode("utf-8", "replace")


def keep(root: str | Path, tree: str, head: str | None, ref: str, message: str) -> str:
    """A commit of `tree` (parent: `head`) kept alive under `ref`; returns the commit id."""
    parents = ["-p", head] if head else []
    commit = (
        git(root, "commit-tree", "--no-gpg-sign", tree, *parents, "-m", message, env=dict(IDENTITY))
        .stdout.decode()
        .strip()
    )
    git(root, "update-ref", "-m", message, ref, commit)
    return commit


def add_worktree(root: str | Path, path: str | Path, commit: str) -> None:
    """A new git worktree at `path` with `commit` checked out (detached); `path` must not exist."""
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise InvalidArgument(
            f"worktree path {target} already exists; give a new path (git creates the directory)"
        )
    git(root, "worktree", "add", "--detach", "--quiet", str(target.absolute()), commit)


def remove_worktree(root: str | Path, path: str | Path) -> None:
    """Undo `add_worktree` (best effort, for a fork that could not be created)."""
    git(root, "worktree", "remove", "--force", str(Path(path).absolute()), check=False)
