"""Running command steps and command gates: argv without a shell, a timeout, a capped output tail.

Output goes to a temporary file rather than a pipe so that a chatty test suite can neither fill
memory nor block on a full pipe; only the last OUTPUT_TAIL_BYTES are kept (they hold the failure).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import typing
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL_BYTES = 16_000


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None
    output: str
    duration_seconds: float
    timed_out: bool


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


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    timeout_seconds: float,
    tail_bytes: int = OUTPUT_TAIL_BYTES,
    on_start: typing.Callable[[Peek], None] | None = None,
) -> CommandResult:
    """Run `argv` in `cwd`; stdout and stderr together, the tail kept. Never raises for the command's faults.

    `on_start(peek)`: told once the command runs; `peek()` is its output so far (a tail), for a progress
    display in another thread, and None once the command has ended.
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
            )
        except FileNotFoundError:
            return CommandResult(127, f"command not found: {argv[0]}", time.monotonic() - started, False)
        except PermissionError:
            return CommandResult(126, f"permission denied: {argv[0]}", time.monotonic() - started, False)
        except OSError as exc:
            return CommandResult(
                126, f"cannot run {argv[0]}: {exc.strerror}", time.monotonic() - started, False
            )
        peek = _Peeker(out.fileno(), 4000)
        timed_out = False
        try:
            if on_start is not None:
                on_start(peek)
            exit_code: int | None = proc.wait(timeout=timeout_seconds)
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
        return CommandResult(exit_code, _read_tail(out, tail_bytes), time.monotonic() - started, timed_out)
