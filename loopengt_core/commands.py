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


def run_command(
    argv: list[str], *, cwd: Path, timeout_seconds: float, tail_bytes: int = OUTPUT_TAIL_BYTES
) -> CommandResult:
    """Run `argv` in `cwd`; stdout and stderr together, the tail kept. Never raises for the command's faults."""
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
        timed_out = False
        try:
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
        return CommandResult(exit_code, _read_tail(out, tail_bytes), time.monotonic() - started, timed_out)
