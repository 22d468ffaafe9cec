"""Running git for the workspace: a clean environment, no prompts or pagers, a timeout, and git's
failures turned into a WorkspaceError that names the fix."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from loopengt_core.service.workspace.errors import OR_NONE, GitMissing, NotAGitRepository, WorkspaceError

# Variables that point git at another repository or index: a loopengt inside a git hook (or an IDE
# that exports them) must still look at the run's own work tree.
REPO_ENV = (
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
IDENTITY = {
    "GIT_AUTHOR_NAME": "loopengt",
    "GIT_AUTHOR_EMAIL": "loopengt@localhost",
    "GIT_COMMITTER_NAME": "loopengt",
    "GIT_COMMITTER_EMAIL": "loopengt@localhost",
}
GIT_TIMEOUT_SECONDS = 300.0
IGNORED_NOTICE = b"The following paths are ignored by one of your .gitignore files:"
"""How git begins its notice that paths named in a pathspec are ignored anyway."""


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for git: no variable pointing at another repository, no prompt or
    pager, C locale (messages are parsed); `extra` on top."""
    env = {k: v for k, v in os.environ.items() if k not in REPO_ENV}
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


def check_root(root: str | Path) -> None:
    """Raise WorkspaceError (naming the fix) when the run's work tree is gone."""
    if not Path(root).is_dir():
        raise WorkspaceError(
            f"the run's work tree {root} does not exist (any more); recreate it, or start a new run"
        )


def git(
    root: str | Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run `git args` in `root`. Raises WorkspaceError (naming the fix) when `check` and git fails."""
    done = finish_git(root, start_git(root, *args, env=env))
    if check and done.returncode != 0:
        raise failure(root, args, done.stderr)
    return done


def start_git(root: str | Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `git args` in `root` without waiting (so that it can run beside another git command)."""
    check_root(root)
    try:
        return subprocess.Popen(
            ["git", "-c", "core.splitIndex=false", *args],
            cwd=root,
            env=git_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise GitMissing(f"the `git` program is not on PATH: install git{OR_NONE}") from None


def finish_git(root: str | Path, proc: subprocess.Popen[bytes]) -> subprocess.CompletedProcess[bytes]:
    """Wait for a started git command; killed after GIT_TIMEOUT_SECONDS."""
    try:
        out, err = proc.communicate(timeout=GIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        reap(proc)
        command = proc.args[3] if isinstance(proc.args, list) else "git"  # after "git -c core.splitIndex=…"
        raise WorkspaceError(
            f"`git {command}` in {root} took more than {GIT_TIMEOUT_SECONDS:g} s; "
            f"check the repository (git status){OR_NONE}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Stop a started git command whose answer is no longer wanted (another one failed)."""
    proc.kill()
    proc.communicate()


def failure(root: str | Path, args: tuple[str, ...], stderr: bytes) -> WorkspaceError:
    """The error for a failed `git args` in `root`, from its stderr: what went wrong and the fix."""
    text = stderr.decode("utf-8", "replace").strip()
    detail = "; ".join(complaints(text)[:4]) or "no message"
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


def complaints(text: str) -> list[str]:
    """git's message lines, less its hints and its notice that excluded paths are ignored anyway."""
    notice = IGNORED_NOTICE.decode()
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
