"""The project root: the server reads and creates files only inside the project it serves.

A path a client sends (`spec_path`, `worktree`) is resolved after symlinks and refused outside the
root, so neither `../`, an absolute path nor a symlink reaches the rest of the machine. Files are
read only when they are regular files, opened without blocking (a FIFO would hang a worker thread;
`/dev/zero` or a `/proc` file never ends) and up to a size cap. The CLI reads the paths a person
types without the root check (their own files) but with the same safe read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.model.limits import Limit, too_large

WORKTREES_DIR = Path(".loopengt") / "worktrees"


class OutsideRoot(InvalidArgument):
    """A path argument leads outside the folder the server may touch."""

    code = "outside_root"


class UnreadableFile(LoopengtError):
    """A path names something that is not a readable regular file; the message says what it is."""

    code = "unreadable_file"


def text_path(given: object, what: str) -> str:
    """`given` as a usable path string: text, not empty, no NUL byte."""
    if not isinstance(given, str) or not given.strip():
        raise InvalidArgument(f"{what} must be a path (text)")
    if "\x00" in given:
        raise InvalidArgument(f"{what} contains a NUL byte; give a file path without one")
    return given


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or under it (both already resolved)."""
    return path == folder or folder in path.parents


def confine(given: object, root: Path, what: str = "spec_path") -> Path:
    """`given` (relative to `root`, or absolute) resolved after symlinks; refused outside `root`."""
    text = text_path(given, what)
    top = root.resolve()
    try:
        resolved = (top / text).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise InvalidArgument(f"{what} '{text}' cannot be resolved (a symlink loop?)") from None
    if not inside(resolved, top):
        raise OutsideRoot(
            f"{what} '{text}' is outside the project root {top}: the server reads and writes only "
            "files under it (start the server in the project, or with --root DIR)"
        )
    return resolved


def worktree_path(given: object, root: Path) -> Path:
    """Where a client may create a git worktree: only inside the project's worktree folder.

    A relative path is taken inside that folder (`try-docs` -> `<root>/.loopengt/worktrees/try-docs`);
    an absolute one must already lie there. A person can put one anywhere from the terminal.
    """
    text = text_path(given, "worktree")
    folder = root.resolve() / WORKTREES_DIR
    try:
        resolved = (folder / text).resolve()
    except (OSError, RuntimeError):
        raise InvalidArgument(f"worktree '{text}' cannot be resolved (a symlink loop?)") from None
    if resolved == folder or not inside(resolved, folder):
        raise OutsideRoot(
            f"worktree '{text}' is outside the project's worktree folder {folder}: give a new folder "
            f"name such as 'try-docs' (created there), or create it from the terminal with "
            "`loopengt resume RUN_ID --checkpoint ID --worktree PATH`"
        )
    return resolved


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(
    path: str | Path, limit: Limit, what: str = "the file", *, root: Path | None = None
) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Never blocks on a FIFO or device.

    `root`: `path` was resolved inside it (`confine`); the file opened must still be there, so a
    symlink swapped in meanwhile is not followed out of the project.
    Raises UnreadableFile (missing, not a regular file, no permission) or TooLarge; the messages
    name the path as given and never its content.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if root is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    maximum = limit.get()
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except PermissionError:
        raise UnreadableFile(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFile(f"{path}: is a symbolic link (it changed while being opened)") from None
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO with nobody writing on some systems
            raise UnreadableFile(f"{path}: is not a regular file") from None
        raise UnreadableFile(f"{path}: cannot be read ({exc.strerror or 'error'})") from None
    try:
        if root is not None:
            _still_inside(fd, path, root)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"{path}: is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > maximum:
            raise too_large(what, info.st_size, limit, maximum)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, maximum + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > maximum:  # it grew while being read
                raise too_large(what, total, limit, maximum)
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot be read ({exc.strerror or 'error'})") from None
    finally:
        os.close(fd)


def _still_inside(fd: int, path: str | Path, root: Path) -> None:
    """On Linux, where the open file really is (a directory on the way may have been swapped)."""
    try:
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return  # no /proc: O_NOFOLLOW covered the last component
    if not inside(real, root.resolve()):
        raise UnreadableFile(f"{path}: changed while being opened and now lies outside the project root")
