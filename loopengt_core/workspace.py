"""The code's state beside the loop's state: git snapshots of a run's work tree (I/O; the service uses it).

A snapshot is the id of a git tree holding every tracked and untracked-but-not-ignored file as it is
on disk. It is computed on a private index (`GIT_INDEX_FILE`), so the user's index, branch and stash
are never touched. The private index is seeded from a copy of the user's and kept between snapshots
(`<git dir>/loopengt/index-<exclusions>-<signature>`): its stat cache and cache tree make the next
snapshot hash only the files changed since the last one. It is seeded anew whenever the user's index
or info/exclude changes, when a .gitignore in the work tree changes (what it now ignores must leave
the index), and when it names objects `git gc` has pruned since, so "tracked" and "ignored" keep
meaning what the user says. Each snapshot works on its own copy and renames it into place, so
concurrent snapshots never contend for git's index lock. Blobs land in the object store as loose
objects (that is how git builds a tree); checkpoints keep theirs alive with a commit under
`refs/loopengt/<run>/<checkpoint>`.

Never calls the network, never prompts, never starts a pager. The engine never imports this module:
the service passes the results in as values, so replaying a run never runs git.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt_core.errors import InvalidArgument, LoopengtError

# Variables that point git at another repository or index: a loopengt inside a git hook (or an IDE
# that exports them) must still look at the run's own work tree.
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_INTERNAL_SUPER_PREFIX",
)
_IDENTITY = {
    "GIT_AUTHOR_NAME": "loopengt",
    "GIT_AUTHOR_EMAIL": "loopengt@localhost",
    "GIT_COMMITTER_NAME": "loopengt",
    "GIT_COMMITTER_EMAIL": "loopengt@localhost",
}
GIT_TIMEOUT_SECONDS = 300.0
# how every message below ends when turning recording off is a way out: true for a new run only (a
# running run keeps its spec), so the service leaves it out of what it says about a running one
OR_NONE = ", or set `workspace: none` in the spec"


class WorkspaceError(LoopengtError):
    """git could not record or restore a run's files; the message says what to do."""

    code = "workspace"


class GitMissing(WorkspaceError):
    """The run needs git and the `git` program is not on PATH."""

    code = "git_missing"


class NotAGitRepository(WorkspaceError):
    """The run's folder is not in a git repository, and the spec asks for one."""

    code = "not_a_git_repository"


class WorkspaceDrift(WorkspaceError):
    """Files changed outside the loop since its last recorded step."""

    code = "workspace_drift"

    def __init__(self, message: str, *, changed: list[str], run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.changed = changed


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


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        PAGER="cat",
        GIT_OPTIONAL_LOCKS="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        LC_ALL="C",
    )
    if extra:
        env.update(extra)
    return env


def _check_root(root: str | Path) -> None:
    if not Path(root).is_dir():
        raise WorkspaceError(
            f"the run's work tree {root} does not exist (any more); recreate it, or start a new run"
        )


def _git(
    root: str | Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run `git args` in `root`. Raises WorkspaceError (naming the fix) when `check` and git fails."""
    done = _finish_git(root, _start_git(root, *args, env=env))
    if check and done.returncode != 0:
        raise _failure(root, args, done.stderr)
    return done


def _start_git(root: str | Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `git args` in `root` without waiting (so that it can run beside another git command)."""
    _check_root(root)
    try:
        return subprocess.Popen(
            ["git", "-c", "core.splitIndex=false", *args],
            cwd=root,
            env=_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise GitMissing(f"the `git` program is not on PATH: install git{OR_NONE}") from None


def _finish_git(root: str | Path, proc: subprocess.Popen[bytes]) -> subprocess.CompletedProcess[bytes]:
    """Wait for a started git command; killed after GIT_TIMEOUT_SECONDS."""
    try:
        out, err = proc.communicate(timeout=GIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _reap(proc)
        command = proc.args[3] if isinstance(proc.args, list) else "git"  # after "git -c core.splitIndex=…"
        raise WorkspaceError(
            f"`git {command}` in {root} took more than {GIT_TIMEOUT_SECONDS:g} s; "
            f"check the repository (git status){OR_NONE}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Stop a started git command whose answer is no longer wanted (another one failed)."""
    proc.kill()
    proc.communicate()


def _failure(root: str | Path, args: tuple[str, ...], stderr: bytes) -> WorkspaceError:
    text = stderr.decode("utf-8", "replace").strip()
    detail = "; ".join(_complaints(text)[:4]) or "no message"
    if "not a git repository" in text:
        return NotAGitRepository(f"{root} is not inside a git work tree; run `git init` there{OR_NONE}")
    if "dubious ownership" in text:
        found = re.search(r"dubious ownership in repository at '([^'\n]*)'", text)
        where = found.group(1) if found else str(root)
        return WorkspaceError(
            f"git refuses the repository at {where}: another user owns it (dubious ownership); if you "
            f"trust it, run `git config --global --add safe.directory {where}`{OR_NONE}"
        )
    hint = ""
    if "unmerged" in text or "needs merge" in text:
        hint = " (a merge is in progress: resolve or abort it first)"
    elif "does not have a commit checked out" in text:
        hint = (
            " (an embedded git repository without commits: commit in it, delete it or add it to .gitignore)"
        )
    elif "Permission denied" in text:
        hint = " (a file cannot be read: fix its permissions or add it to .gitignore)"
    return WorkspaceError(f"`git {args[0]}` failed in {root}: {detail}{hint}; fix it{OR_NONE}")


def _complaints(text: str) -> list[str]:
    """git's message lines, less its hints and its notice that excluded paths are ignored anyway."""
    notice = _IGNORED_NOTICE.decode()
    lines: list[str] = []
    listing = False
    for line in text.splitlines():
        if line == notice:
            listing = True
        elif line.startswith(("error: ", "fatal: ", "warning: ")):
            listing = False
            lines.append(line)
        elif not listing and line.strip() and not line.startswith("hint: "):
            lines.append(line)
    return lines


def is_work_tree(path: str | Path) -> tuple[bool, str]:
    """Whether `path` is inside a git work tree, and if not, why (git's own message).

    Raises WorkspaceError (naming the fix) for a work tree git refuses to look at (dubious ownership):
    that is a repository whose files cannot be recorded, not a folder without one.
    """
    done = _git(path, "rev-parse", "--is-inside-work-tree", check=False)
    if done.returncode == 0 and done.stdout.strip() == b"true":
        return True, ""
    text = done.stderr.decode("utf-8", "replace").strip()
    if "dubious ownership" in text:
        raise _failure(path, ("rev-parse",), done.stderr)
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
        where = _git(path, "rev-parse", "--show-toplevel", "--git-path", "index", "--git-path", "objects")
        top, index, objects = where.stdout.decode().splitlines()[:3]
        with tempfile.TemporaryDirectory(prefix="loopengt-probe-") as scratch:
            copy = Path(scratch) / "index"
            (Path(scratch) / "objects").mkdir()
            _copy_seed(Path(path) / index, copy)
            env = {
                "GIT_INDEX_FILE": str(copy),
                "GIT_OBJECT_DIRECTORY": str(Path(scratch) / "objects"),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str((Path(path) / objects).resolve()),
            }
            _add_all(path, _pathspec(path, Path(top), exclude), env)
            _git(path, "write-tree", env=env)
    except GitMissing as exc:
        return exc.message if workspace == "git" else None
    except WorkspaceError as exc:
        return exc.message
    return None


def prefix(root: str | Path) -> str:
    """`root` relative to the top of its work tree ("" at the top, else "dir/sub/")."""
    return _git(root, "rev-parse", "--show-prefix").stdout.decode().strip()


@dataclass(frozen=True)
class _Layout:
    """Where git keeps a work tree's files: looked up once per process (`_still_holds` checks it)."""

    top: Path
    index: Path
    private: Path  # <git dir>/loopengt: the private indexes
    info_exclude: Path


_layouts: dict[str, _Layout] = {}
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


def _parse_layout(root: str | Path, done: subprocess.CompletedProcess[bytes]) -> tuple[_Layout, str | None]:
    """The layout and HEAD (None before the first commit) from `git rev-parse _LAYOUT_ARGS`."""
    lines = done.stdout.decode().splitlines()
    if done.returncode not in (0, 1) or len(lines) < 4:
        raise _failure(root, ("rev-parse",), done.stderr)
    here = Path(root)  # git paths are relative to root
    layout = _Layout(Path(lines[0]), here / lines[1], here / lines[2], here / lines[3])
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
        layout, head = _parse_layout(root, _git(root, *_LAYOUT_ARGS, check=False))
    else:
        layout, head = cached, None
    _layouts[key] = layout
    try:
        tree, probed = _scan(root, layout, exclude, read_head=cached is not None)
    except WorkspaceError:
        _layouts.pop(key, None)
        raise
    return WorkspaceState(root=key, head=probed if cached is not None else head, tree=tree)


def _still_holds(root: str | Path, layout: _Layout) -> bool:
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
    root: str | Path, layout: _Layout, exclude: Sequence[str | Path], *, read_head: bool
) -> tuple[str, str | None]:
    """The tree of the work tree through the private index; with `read_head`, also HEAD (read by a
    git process beside the scan, so it costs no time)."""
    pathspec = _pathspec(root, layout.top, exclude)
    # one kept index per set of exclusions (an exclusion only stops updates, it removes nothing)
    kind = hashlib.sha256("\0".join(pathspec).encode()).hexdigest()[:12]
    signature = "-".join(_signature(path) for path in (layout.index, layout.info_exclude))
    kept: Path | None = layout.private / f"index-{kind}-{signature}"
    try:
        layout.private.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="tmp-", dir=layout.private))
    except OSError:  # a read-only git dir: a throwaway copy of the user's index still works
        scratch, kept = Path(tempfile.mkdtemp(prefix="loopengt-index-")), None
    probing = _start_git(root, *_HEAD_ARGS) if read_head else None
    try:
        copy = scratch / "index"
        env = {"GIT_INDEX_FILE": str(copy)}
        from_kept = kept is not None and _copy_seed(kept, copy)
        if not from_kept:
            _copy_seed(layout.index, copy)
        try:
            ignores_changed = _add_all(root, pathspec, env)
            if from_kept and ignores_changed:
                raise _Reseed
            tree = _git(root, "write-tree", env=env).stdout.decode().strip()
        except (WorkspaceError, _Reseed):
            if not from_kept:
                raise
            # An ignore file changed (what it now ignores must leave the index), or the kept index
            # names objects `git gc` has pruned since: start again from the user's index.
            copy.unlink(missing_ok=True)
            if kept is not None:
                kept.unlink(missing_ok=True)
            _copy_seed(layout.index, copy)
            _add_all(root, pathspec, env)
            tree = _git(root, "write-tree", env=env).stdout.decode().strip()
        if kept is not None:
            _keep_index(copy, kept, kind)
    except BaseException:
        if probing is not None:
            _reap(probing)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tree, _head(root, probing) if probing is not None else None


_EXCLUDE = ":(top,exclude,literal)"


def _pathspec(root: str | Path, top: Path, exclude: Sequence[str | Path]) -> list[str]:
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
    done = _finish_git(root, probing)
    if done.returncode not in (0, 1):
        raise _failure(root, ("rev-parse",), done.stderr)
    return (done.stdout.decode().strip() or None) if done.returncode == 0 else None


class _Reseed(Exception):
    """The kept index cannot be trusted for this snapshot."""


def _add_all(root: str | Path, pathspec: list[str], env: dict[str, str]) -> bool:
    """`git add -A` into the private index; whether a .gitignore was among the paths it changed."""
    done = _git(root, "add", "-A", "--verbose", "--", *pathspec, env=env, check=False)
    if done.returncode != 0 and not (done.returncode == 1 and _only_excluded_ignored(done.stderr, pathspec)):
        raise _failure(root, ("add",), done.stderr)
    return any(line.rstrip(b"'\"").endswith(b".gitignore") for line in done.stdout.splitlines())


_IGNORED_NOTICE = b"The following paths are ignored by one of your .gitignore files:"


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
    if not excluded or not lines or lines[0] != _IGNORED_NOTICE:
        return False
    listed = [line.rstrip(b"/") for line in lines[1:] if not line.startswith(b"hint: ")]
    return bool(listed) and all(
        any(path == ours or ours.startswith(path + b"/") or path.startswith(ours + b"/") for ours in excluded)
        for path in listed
    )


def _copy_seed(source: Path, dest: Path) -> bool:
    """Give `dest` the content and mtime (git's racy-clean check relies on it) of an index file; False
    if there is none.

    A hard link when it can be: git never changes an index file in place (it writes a lock file and
    renames it over), so the link stays a faithful copy. Otherwise the bytes are read through one open
    file, so a concurrent rename over `source` cannot pair old bytes with a newer mtime.
    """
    try:
        os.link(source, dest)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass  # another filesystem, or links not allowed: copy
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    with os.fdopen(fd, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
        st = os.fstat(src.fileno())
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True


def _signature(path: Path) -> str:
    """Which version of a file (the user's index, info/exclude) a private index was seeded under."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return "0"
    return f"{st.st_ino:x}.{st.st_size:x}.{st.st_mtime_ns:x}"


STALE_SCRATCH_SECONDS = 3600.0


def _keep_index(copy: Path, kept: Path, kind: str) -> None:
    """Put the private index in place for the next snapshot; drop the same kind's older ones (seeded
    from an older user index), and scratch directories a killed snapshot left (an hour old: a running
    one keeps its own)."""
    try:
        os.replace(copy, kept)
        stale = time.time() - STALE_SCRATCH_SECONDS
        for entry in os.scandir(kept.parent):
            try:
                if entry.name.startswith(f"index-{kind}-") and entry.name != kept.name:
                    os.unlink(entry.path)
                elif entry.name.startswith("tmp-") and entry.stat(follow_symlinks=False).st_mtime < stale:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except FileNotFoundError:
                continue  # another snapshot cleaned it first
    except OSError:
        pass  # only a cache: the next snapshot seeds from the user's index again


def changed_paths(root: str | Path, from_tree: str, to_tree: str) -> list[str]:
    """Paths (from the top of the work tree) that differ between two trees: added, changed, deleted."""
    if from_tree == to_tree:
        return []
    out = _git(root, "diff-tree", "-r", "--name-only", "-z", "--no-renames", from_tree, to_tree).stdout
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def diff(root: str | Path, from_tree: str, to_tree: str, *, stat: bool = False) -> str:
    """`git diff` between two trees, as text (no pager, no colour, no external diff tool)."""
    args = ["diff", "--no-ext-diff", "--no-color", *(["--stat"] if stat else []), from_tree, to_tree]
    return _git(root, *args).stdout.decode("utf-8", "replace")


def keep(root: str | Path, tree: str, head: str | None, ref: str, message: str) -> str:
    """A commit of `tree` (parent: `head`) kept alive under `ref`; returns the commit id."""
    parents = ["-p", head] if head else []
    commit = (
        _git(root, "commit-tree", "--no-gpg-sign", tree, *parents, "-m", message, env=dict(_IDENTITY))
        .stdout.decode()
        .strip()
    )
    _git(root, "update-ref", "-m", message, ref, commit)
    return commit


def add_worktree(root: str | Path, path: str | Path, commit: str) -> None:
    """A new git worktree at `path` with `commit` checked out (detached); `path` must not exist."""
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise InvalidArgument(
            f"worktree path {target} already exists; give a new path (git creates the directory)"
        )
    _git(root, "worktree", "add", "--detach", "--quiet", str(target.absolute()), commit)


def remove_worktree(root: str | Path, path: str | Path) -> None:
    """Undo `add_worktree` (best effort, for a fork that could not be created)."""
    _git(root, "worktree", "remove", "--force", str(Path(path).absolute()), check=False)
