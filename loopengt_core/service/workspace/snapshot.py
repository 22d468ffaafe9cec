"""Snapshots of a work tree: the git tree of its tracked and untracked-but-not-ignored files, built on
a private index so the user's index, branch and stash are never touched (see `loopengt_core.service.workspace`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt_core.service.workspace.errors import WorkspaceError
from loopengt_core.service.workspace.gitrun import IGNORED_NOTICE, failure, finish_git, git, reap, start_git
from loopengt_core.service.workspace.seed import copy_seed, file_signature, keep_index


@dataclass(frozen=True)
class WorkspaceState:
    """Where a run works and what its files are: `tree` covers tracked + untracked-not-ignored files."""

    root: str
    head: str | None
    tree: str

    def record(self) -> dict[str, Any]:
        """What a step's event keeps (the root is recorded once, when the run starts or forks)."""
        return {"head": self.head, "tree": self.tree}

    def start_record(self) -> dict[str, Any]:
        """The files' state as run_started and run_forked record it."""
        return {"root": self.root, "head": self.head, "tree": self.tree}


@dataclass(frozen=True)
class Layout:
    """Where git keeps a work tree's files: looked up once per process (`_still_holds` checks it)."""

    top: Path
    index: Path
    private: Path  # <git dir>/loopengt: the private indexes
    info_exclude: Path


_layouts: dict[str, Layout] = {}
_LAYOUT_ARGS = (
    "rev-parse",
    "--show-toplevel",
    "--git-path",
    "index",
    "--git-path",
    "loopengt",
    "--git-path",
    "info/exclude",
    "--verify",
    "-q",
    "HEAD",
)
_HEAD_ARGS = ("rev-parse", "--verify", "-q", "HEAD")


def _parse_layout(root: str | Path, done: subprocess.CompletedProcess[bytes]) -> tuple[Layout, str | None]:
    """The layout and HEAD (None before the first commit) from `git rev-parse _LAYOUT_ARGS`."""
    lines = done.stdout.decode().splitlines()
    if done.returncode not in (0, 1) or len(lines) < 4:
        raise failure(root, ("rev-parse",), done.stderr)
    here = Path(root)  # git paths are relative to root
    layout = Layout(Path(lines[0]), here / lines[1], here / lines[2], here / lines[3])
    head = lines[4].strip() if done.returncode == 0 and len(lines) > 4 else None
    return layout, head


def snapshot(root: str | Path, *, exclude: Sequence[str | Path] = ()) -> WorkspaceState:
    """The tree of every tracked and untracked-but-not-ignored file of the work tree `root` is in.

    The whole work tree, also when `root` is a subdirectory of it. `exclude`: directories or files
    (absolute, or relative to `root`) left out when they lie in the work tree, such as the run store.
    """
    key = str(root)
    cached = _layouts.get(key)
    if cached is not None and not _still_holds(root, cached):
        cached = None  # the repository moved or was made anew since: ask git again
    if cached is None:
        layout, head = _parse_layout(root, git(root, *_LAYOUT_ARGS, check=False))
    else:
        layout, head = cached, None
    _layouts[key] = layout
    try:
        tree, probed = _scan(root, layout, exclude, read_head=cached is not None)
    except WorkspaceError:
        _layouts.pop(key, None)
        raise
    return WorkspaceState(root=key, head=probed if cached is not None else head, tree=tree)


def _still_holds(root: str | Path, layout: Layout) -> bool:
    """Whether a cached layout still describes `root`: its git dir is there, and no other repository
    begins between `root` and the top of the work tree (a few stats, not a git process)."""
    if not layout.index.parent.is_dir():
        return False
    here = Path(root).resolve()
    top = layout.top.resolve()
    for folder in (here, *here.parents):
        if folder == top:
            return True
        if (folder / ".git").exists():
            return False
    return False  # root is no longer inside the work tree


def _scan(
    root: str | Path, layout: Layout, exclude: Sequence[str | Path], *, read_head: bool
) -> tuple[str, str | None]:
    """The tree of the work tree through the private index; with `read_head`, also HEAD (read by a
    git process beside the scan, so it costs no time)."""
    pathspec = work_tree_pathspec(root, layout.top, exclude)
    # one kept index per set of exclusions (an exclusion only stops updates, it removes nothing)
    kind = hashlib.sha256("\0".join(pathspec).encode()).hexdigest()[:12]
    signature = "-".join(file_signature(path) for path in (layout.index, layout.info_exclude))
    kept: Path | None = layout.private / f"index-{kind}-{signature}"
    try:
        layout.private.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="tmp-", dir=layout.private))
    except OSError:  # a read-only git dir: a throwaway copy of the user's index still works
        scratch, kept = Path(tempfile.mkdtemp(prefix="loopengt-index-")), None
    probing = start_git(root, *_HEAD_ARGS) if read_head else None
    try:
        copy = scratch / "index"
        env = {"GIT_INDEX_FILE": str(copy)}
        from_kept = kept is not None and copy_seed(kept, copy)
        if not from_kept:
            copy_seed(layout.index, copy)
        try:
            ignores_changed = add_all(root, pathspec, env)
            if from_kept and ignores_changed:
                raise _Reseed
            tree = git(root, "write-tree", env=env).stdout.decode().strip()
        except (WorkspaceError, _Reseed):
            if not from_kept:
                raise
            # An ignore file changed (what it now ignores must leave the index), or the kept index
            # names objects `git gc` has pruned since: start again from the user's index.
            copy.unlink(missing_ok=True)
            if kept is not None:
                kept.unlink(missing_ok=True)
            copy_seed(layout.index, copy)
            add_all(root, pathspec, env)
            tree = git(root, "write-tree", env=env).stdout.decode().strip()
        if kept is not None:
            keep_index(copy, kept, kind)
    except BaseException:
        if probing is not None:
            reap(probing)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tree, _head(root, probing) if probing is not None else None


_EXCLUDE = ":(top,exclude,literal)"


def work_tree_pathspec(root: str | Path, top: Path, exclude: Sequence[str | Path]) -> list[str]:
    """The whole work tree, less the excluded paths that lie in it."""
    pathspec = [":/"]
    for path in exclude:
        try:
            inside = (Path(root) / path).resolve().relative_to(top.resolve()).as_posix()
        except ValueError:
            continue  # not in the work tree: nothing to leave out
        if inside != ".":
            pathspec.append(f"{_EXCLUDE}{inside}")
    return pathspec


def _head(root: str | Path, probing: subprocess.Popen[bytes]) -> str | None:
    """HEAD's commit from a started `rev-parse --verify -q HEAD` (None before the first commit)."""
    done = finish_git(root, probing)
    if done.returncode not in (0, 1):
        raise failure(root, ("rev-parse",), done.stderr)
    return (done.stdout.decode().strip() or None) if done.returncode == 0 else None


class _Reseed(Exception):
    """The kept index cannot be trusted for this snapshot."""


def add_all(root: str | Path, pathspec: list[str], env: dict[str, str]) -> bool:
    """`git add -A` into the private index; whether a .gitignore was among the paths it changed."""
    done = git(root, "add", "-A", "--verbose", "--", *pathspec, env=env, check=False)
    if done.returncode != 0 and not (done.returncode == 1 and _only_excluded_ignored(done.stderr, pathspec)):
        raise failure(root, ("add",), done.stderr)
    return any(line.rstrip(b"'\"").endswith(b".gitignore") for line in done.stdout.splitlines())


def _only_excluded_ignored(stderr: bytes, pathspec: list[str]) -> bool:
    """Whether git's only complaint is that paths we excluded (the store) are ignored anyway.

    git (2.39 at least) exits 1 when an exclude pathspec names an ignored path, or a path inside an
    ignored directory (it then lists that directory), yet it has added every other file as asked. The
    store is usually ignored (`.loopengt/` in .gitignore), so that notice is expected: it is accepted
    when it lists nothing but the excluded paths, what lies in them, or directories that hold them
    (git runs with LC_ALL=C and prints these paths from the top of the work tree, unquoted). Warnings
    are harmless. Costs no git process: the exit status and message of the `add` itself say it.
    """
    excluded = [os.fsencode(p[len(_EXCLUDE) :]) for p in pathspec if p.startswith(_EXCLUDE)]
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(b"warning: ")]
    if not excluded or not lines or lines[0] != IGNORED_NOTICE:
        return False
    listed = [line.rstrip(b"/") for line in lines[1:] if not line.startswith(b"hint: ")]
    return bool(listed) and all(
        any(path == ours or ours.startswith(path + b"/") or path.startswith(ours + b"/") for ours in excluded)
        for path in listed
    )
