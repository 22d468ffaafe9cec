"""Running command steps and command gates: argv without a shell, a timeout, a capped output tail.

Output goes to a temporary file rather than a pipe so that a chatty test suite can neither fill
memory nor block on a full pipe; only the last OUTPUT_TAIL_BYTES are kept (they hold the failure).

A program that cannot be found or cannot start (not on PATH, not executable, no `#!` line) is a
setup problem, not a failed check: the result says so in `setup_error` (the reason and the fix) and
the run pauses for a person instead of feeding `command not found` back to an agent that cannot fix it.
An exit code of 127 from a program that did start (a shell saying `not found`) is a failed check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL_BYTES = 16_000
STOP_GRACE_SECONDS = 1.0  # SIGTERM, then SIGKILL after this long (a stop takes well under 2 s)
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None
    output: str
    duration_seconds: float
    timed_out: bool
    setup_error: str | None = None  # the program could not be found or started: why, and the fix
    stopped: bool = False  # `stop` was set: its process group was killed


def _shebang(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            first = handle.readline(300).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({first[2:].strip()})" if first.startswith("#!") else ""


def cannot_start(program: str, cwd: Path, exc: OSError) -> str | None:
    """Why `program` could not be started in `cwd` and what a person does about it; None if not a setup fault."""
    if isinstance(exc, FileNotFoundError):
        if not cwd.is_dir():
            return f"the working directory {cwd} does not exist; restore it (the run's commands run there)"
        found = shutil.which(program) if "/" not in program else str(cwd / program)
        if found is None:
            hint = (
                " (python3 is on PATH: use `python3` in the command)"
                if program == "python" and shutil.which("python3")
                else ""
            )
            return (
                f"program `{program}` was not found on PATH{hint}; install it or put its folder on the PATH "
                "loopengt runs with, or correct the command in the spec (and start a new run)"
            )
        if Path(found).is_file():  # it is there: the interpreter its #! line names is not
            return (
                f"`{program}` cannot start: the interpreter in its #! line{_shebang(Path(found))} was not "
                "found; install it or correct the #! line (a virtualenv moved or deleted?)"
            )
        return f"`{program}` does not exist in {cwd}; create it, or correct the command in the spec (and start a new run)"
    if isinstance(exc, PermissionError):
        return (
            f"`{program}` cannot start: permission denied (not executable); `chmod +x {program}`, or run "
            f'it through its interpreter (e.g. ["sh", "{program}"])'
        )
    if exc.errno == errno.ENOEXEC:
        return (
            f"`{program}` cannot start: exec format error (a script without a #! line, or a program built "
            "for another machine); add a #! line such as #!/bin/sh, or run it through its interpreter"
        )
    return None


def _read_tail(handle: typing.BinaryIO, limit: int) -> str:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - limit))
    data = handle.read()
    text = data.decode("utf-8", "replace")
    return ("[...]" + text) if size > limit else text


Peek = typing.Callable[[], "str | None"]


class _Peeker:
    """The output so far (its last `limit` bytes), read without moving the offset the command writes at;
    None once the command has ended (its file is closed then, and the descriptor may be reused)."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.ended = False
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            if self.ended:
                return None
            size = os.fstat(self.fd).st_size
            start = max(0, size - self.limit)
            return os.pread(self.fd, size - start, start).decode("utf-8", "replace")

    def end(self) -> None:
        with self._lock:
            self.ended = True


def _prctl() -> typing.Callable[[int, int], int] | None:
    """libc's prctl, looked up before any fork (a child must not import or load anything)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return typing.cast("typing.Callable[[int, int], int]", ctypes.CDLL(None).prctl)
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the thread that started it dies, so a server killed
    mid-gate leaves no gate running on while the next server runs it again."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    """End `proc`'s process group: SIGTERM, then SIGKILL once `grace` seconds have passed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # its children too, if they lingered
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    timeout_seconds: float,
    tail_bytes: int = OUTPUT_TAIL_BYTES,
    on_start: typing.Callable[[Peek], None] | None = None,
    stop: threading.Event | None = None,
) -> CommandResult:
    """Run `argv` in `cwd`; stdout and stderr together, the tail kept. Never raises for the command's faults.

    `on_start(peek)`: told once the command runs; `peek()` is its output so far (a tail), for a progress
    display in another thread, and None once the command has ended. `stop`: once set, the command's
    process group is ended (SIGTERM, SIGKILL a second later) and the result says `stopped`.
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,  # noqa: PLW1509
            )
        except OSError as exc:
            problem = cannot_start(argv[0], cwd, exc)
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            text = problem or f"cannot run {argv[0]}: {exc.strerror}"
            return CommandResult(code, text, time.monotonic() - started, False, setup_error=problem)
        peek = _Peeker(out.fileno(), 4000)
        timed_out = stopped = False
        try:
            if on_start is not None:
                on_start(peek)
            exit_code: int | None = _wait(proc, timeout_seconds, stop)
            if exit_code is None:
                stopped = True
                stop_group(proc)
        except subprocess.TimeoutExpired:
            timed_out = True
            exit_code = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: test runners fork workers
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            peek.end()
        return CommandResult(
            exit_code, _read_tail(out, tail_bytes), time.monotonic() - started, timed_out, stopped=stopped
        )


def _wait(proc: subprocess.Popen[bytes], timeout_seconds: float, stop: threading.Event | None) -> int | None:
    """The exit code; None when `stop` was set first. Raises TimeoutExpired at the timeout."""
    if stop is None:
        return proc.wait(timeout=timeout_seconds)
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = deadline - time.monotonic()
        try:
            return proc.wait(timeout=max(0.0, min(left, _POLL_SECONDS)))
        except subprocess.TimeoutExpired:
            if left <= _POLL_SECONDS:
                raise
        if stop.is_set():
            return None
