"""Whether and where a folder is in a git work tree, and whether a run there could record its files."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from loopengt_core.service.workspace.errors import OR_NONE, GitMissing, WorkspaceError
from loopengt_core.service.workspace.gitrun import failure, git
from loopengt_core.service.workspace.seed import copy_seed
from loopengt_core.service.workspace.snapshot import add_all, work_tree_pathspec


def is_work_tree(path: str | Path) -> tuple[bool, str]:
    """Whether `path` is inside a git work tree, and if not, why (git's own message).

    Raises WorkspaceError (naming the fix) for a work tree git refuses to look at (dubious ownership):
    that is a repository whose files cannot be recorded, not a folder without one.
    """
    done = git(path, "rev-parse", "--is-inside-work-tree", check=False)
    if done.returncode == 0 and done.stdout.strip() == b"true":
        return True, ""
    text = done.stderr.decode("utf-8", "replace").strip()
    if "dubious ownership" in text:
        raise failure(path, ("rev-parse",), done.stderr)
    return False, text.splitlines()[0] if text else "not inside a work tree (a .git or bare directory)"


def probe(path: str | Path, *, exclude: Sequence[str | Path] = (), workspace: str = "auto") -> str | None:
    """Whether a run started in `path` can record its files: None when it can, or when it records
    none (`workspace: auto` outside a work tree or without git; `none`); else the problem and its fix.

    Records them as a run would, but into a throwaway index and object directory (the repository's
    objects are read as alternates), so the repository is left as it was. `loopengt doctor` asks it.
    """
    if workspace == "none":
        return None
    try:
        inside, why = is_work_tree(path)
        if not inside:
            if workspace != "git":
                return None
            return (
                f"workspace: git needs a git work tree, but {path} is not inside one ({why}); "
                f"run `git init` there{OR_NONE}"
            )
        where = git(path, "rev-parse", "--show-toplevel", "--git-path", "index", "--git-path", "objects")
        top, index, objects = where.stdout.decode().splitlines()[:3]
        with tempfile.TemporaryDirectory(prefix="loopengt-probe-") as scratch:
            copy = Path(scratch) / "index"
            (Path(scratch) / "objects").mkdir()
            copy_seed(Path(path) / index, copy)
            env = {
                "GIT_INDEX_FILE": str(copy),
                "GIT_OBJECT_DIRECTORY": str(Path(scratch) / "objects"),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str((Path(path) / objects).resolve()),
            }
            add_all(path, work_tree_pathspec(path, Path(top), exclude), env)
            git(path, "write-tree", env=env)
    except GitMissing as exc:
        return exc.message if workspace == "git" else None
    except WorkspaceError as exc:
        return exc.message
    return None


def prefix(root: str | Path) -> str:
    """`root` relative to the top of its work tree ("" at the top, else "dir/sub/")."""
    return git(root, "rev-parse", "--show-prefix").stdout.decode().strip()
