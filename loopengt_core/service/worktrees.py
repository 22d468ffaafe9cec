"""Isolated steps' git worktrees: made from the run's recorded files, merged at a join, removed at the end.

Each isolated step (`isolation: worktree`) works in `.loopengt/worktrees/<run>/<step>` on the branch
`loopengt/<run>/<step>`, made from a commit of the run's recorded tree (on its recorded HEAD), so a
branch never starts from the user's HEAD of the moment nor from origin. A join commits each branch's
files in its own worktree, merges the commits in spec order with `git merge-tree` (objects only: no
checkout is touched while merging) and checks the result out in a worktree of its own, on
`loopengt/<run>/<join>`. Conflicted files stay in that tree with their markers, for the join's task.

The user's checkout, index, HEAD and stash are never touched: everything here runs on objects, refs
under `loopengt/`, and the worktrees' own indexes. Every operation can be repeated after a crash:
a worktree that no event recorded is made again, a branch whose files are already committed gets no
new commit. Hooks are off for these commands (`core.hooksPath=/dev/null`): a user's post-checkout or
commit hook is for the user's own work. Like `loopengt_core.service.workspace`, the engine never imports this module.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from loopengt_core.service import workspace as git
from loopengt_core.service.paths import WORKTREES_DIR
from loopengt_core.service.workspace import gitrun

_NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
_MARKERS = re.compile(r"^<{7}(?: .*)?\n.*?^>{7}(?: .*)?$", re.S | re.M)


@dataclass(frozen=True)
class Made:
    """A worktree made for a step: its top directory, where the step works, its branch and base commit."""

    top: Path
    workdir: Path
    branch: str
    base: str


@dataclass(frozen=True)
class Merged:
    """The result of a join: the branches' commits in order, the last merge commit, the conflicts."""

    made: Made
    commits: list[tuple[str, str, str]]  # (step, branch, commit)
    commit: str
    conflicts: list[tuple[str, list[str]]]  # (path, hunks)


def branch_name(run_id: str, step: str) -> str:
    """`loopengt/<run>/<step>`, with what git refuses in a ref name (`..`, a trailing `.`, `.lock`) changed."""
    part = re.sub(r"\.(?=\.|$)", "_", step)
    if part.endswith(".lock"):
        part += "_"
    return f"loopengt/{run_id}/{part}"


def folder(root: str | Path, run_id: str) -> Path:
    """Where a run's worktrees go: `.loopengt/worktrees/<run>` in the run's directory."""
    return Path(root).resolve() / WORKTREES_DIR / run_id


def top_of(root: str | Path, run_id: str, step: str) -> Path:
    """The directory of a step's worktree (under the run's worktree folder)."""
    return folder(root, run_id) / branch_name(run_id, step).rsplit("/", 1)[1]


def _ignored(root: str | Path) -> None:
    """A `.gitignore` of `*` in the worktrees' folder, so the user's `git status` never lists them."""
    base = Path(root).resolve() / WORKTREES_DIR
    base.mkdir(parents=True, exist_ok=True)
    marker = base / ".gitignore"
    if not marker.exists():
        marker.write_text("# loopengt's worktrees of isolated steps (loopengt prune removes them)\n*\n")


def base_commit(root: str | Path, tree: str, head: str | None, run_id: str, step: str) -> str:
    """A commit of the run's recorded `tree` on its recorded `head`: what an isolated step starts from."""
    parents = ["-p", head] if head else []
    message = f"loopengt: run {run_id}, files when step {step} started"
    done = gitrun.git(
        root, "commit-tree", "--no-gpg-sign", tree, *parents, "-m", message, env=dict(gitrun.IDENTITY)
    )
    return done.stdout.decode().strip()


def make(root: str | Path, run_id: str, step: str, commit: str) -> Made:
    """A fresh worktree for `step` with `commit` checked out on its branch (reset there if it existed).

    Whatever a crash left at that path (no event recorded it, so no task worked there) is removed first.
    """
    _ignored(root)
    top = top_of(root, run_id, step)
    branch = branch_name(run_id, step)
    _remove_tree(root, top)
    top.parent.mkdir(parents=True, exist_ok=True)
    gitrun.git(root, *_NO_HOOKS, "worktree", "add", "--quiet", "-B", branch, str(top), commit)
    sub = git.prefix(root)
    return Made(top=top, workdir=top / sub if sub else top, branch=branch, base=commit)


def commit_files(top: Path, message: str) -> str:
    """Commit every tracked and untracked-not-ignored file of the worktree `top` on its branch (through
    its own index); no new commit when nothing changed. Returns the branch's commit."""
    gitrun.git(top, "add", "-A", "--", ":/")
    tree = gitrun.git(top, "write-tree").stdout.decode().strip()
    head = gitrun.git(top, "rev-parse", "HEAD").stdout.decode().strip()
    if gitrun.git(top, "rev-parse", "HEAD^{tree}").stdout.decode().strip() == tree:
        return head
    made = gitrun.git(
        top, "commit-tree", "--no-gpg-sign", tree, "-p", head, "-m", message, env=dict(gitrun.IDENTITY)
    )
    commit = made.stdout.decode().strip()
    gitrun.git(top, "update-ref", "-m", message, "HEAD", commit, head, env=dict(gitrun.IDENTITY))
    return commit


def merge(root: str | Path, run_id: str, join: str, branches: list[tuple[str, Path, str]]) -> Merged:
    """Commit each branch (step, worktree top, base) in its worktree, merge them in order onto the first
    one's base, and check the result out in the join's own worktree."""
    commits = [
        (step, branch_name(run_id, step), commit_files(top, f"loopengt: step {step} of run {run_id}"))
        for step, top, _ in branches
    ]
    current = branches[0][2]
    conflicted: dict[str, None] = {}
    for step, branch, commit in commits:
        done = gitrun.git(
            root,
            "merge-tree",
            "--write-tree",
            "--no-messages",
            "--name-only",
            "-z",
            current,
            commit,
            check=False,
        )
        if done.returncode not in (0, 1):
            raise gitrun.failure(root, ("merge-tree",), done.stderr)
        fields = done.stdout.split(b"\0")
        tree = fields[0].decode().strip()
        if done.returncode == 1:
            for name in fields[1:]:
                if not name:
                    break
                conflicted[os.fsdecode(name)] = None
        message = f"loopengt: merge step {step} ({branch}) for join {join} of run {run_id}"
        made = gitrun.git(
            root,
            "commit-tree",
            "--no-gpg-sign",
            tree,
            "-p",
            current,
            "-p",
            commit,
            "-m",
            message,
            env=dict(gitrun.IDENTITY),
        )
        current = made.stdout.decode().strip()
    conflicts = [(path, hunks(root, current, path)) for path in conflicted]
    return Merged(
        made=make(root, run_id, join, current), commits=commits, commit=current, conflicts=conflicts
    )


def hunks(root: str | Path, commit: str, path: str) -> list[str]:
    """The conflicted regions (<<<<<<< to >>>>>>>) of `path` as `commit` holds it; none if it is gone."""
    done = gitrun.git(root, "cat-file", "blob", f"{commit}:{path}", check=False)
    if done.returncode != 0:
        return []
    return [m.group(0) for m in _MARKERS.finditer(done.stdout.decode("utf-8", "replace"))]


def _remove_tree(root: str | Path, top: Path) -> None:
    """Remove the worktree at `top` (registered or not) and forget it; nothing there is fine."""
    gitrun.git(root, "worktree", "remove", "--force", "--force", str(top), check=False)
    if top.exists():
        shutil.rmtree(top, ignore_errors=True)
    gitrun.git(root, "worktree", "prune", check=False)


def remove(root: str | Path, top: Path, branch: str | None) -> None:
    """Remove a worktree and, when `branch` is given, delete that branch (both may be gone already)."""
    _remove_tree(root, top)
    if branch is not None:
        gitrun.git(root, "branch", "-D", "--quiet", branch, check=False)


def listed(root: str | Path, run_id: str) -> list[tuple[Path, str | None]]:
    """The worktrees git knows under the run's folder: (top, branch or None when detached)."""
    out = gitrun.git(root, "worktree", "list", "--porcelain", "-z").stdout.decode()
    inside = folder(root, run_id)
    found: list[tuple[Path, str | None]] = []
    for record in out.split("\0\0"):
        lines: dict[str, str] = {}
        for line in record.split("\0"):
            key, _, value = line.partition(" ")
            if key:
                lines[key] = value
        if "worktree" not in lines:
            continue
        top = Path(lines["worktree"])
        if top.resolve().is_relative_to(inside):
            ref = lines.get("branch", "")
            found.append((top, ref.removeprefix("refs/heads/") or None))
    return found


def run_branches(root: str | Path, run_id: str) -> list[str]:
    """The branches `loopengt/<run>/*` that exist."""
    out = gitrun.git(
        root, "for-each-ref", "--format=%(refname:short)", f"refs/heads/loopengt/{run_id}/"
    ).stdout
    return [line for line in out.decode().splitlines() if line]


def prune(root: str | Path, run_id: str, *, keep_branches: set[str]) -> list[str]:
    """Remove every worktree of an ended run and its branches but `keep_branches` (the joins' results);
    what a crash left half-made included. Returns what was removed, for the report."""
    removed: list[str] = []
    for top, _ in listed(root, run_id):
        _remove_tree(root, top)
        removed.append(str(top))
    leftover = folder(root, run_id)
    if leftover.exists():
        for entry in sorted(leftover.iterdir()):
            _remove_tree(root, entry)
            removed.append(str(entry))
        shutil.rmtree(leftover, ignore_errors=True)
    for branch in run_branches(root, run_id):
        if branch not in keep_branches:
            gitrun.git(root, "branch", "-D", "--quiet", branch, check=False)
            removed.append(branch)
    return removed
