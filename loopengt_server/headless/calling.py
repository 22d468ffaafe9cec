"""One agent call: the task JSON on the command's stdin, its stdout as the output, what its work used."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from loopengt_core.model.budget import Usage, parse_usage
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.limits import MAX_JSON_DEPTH, MAX_USAGE_BYTES, checked, too_deep

ERROR_TAIL_CHARS = 2000
USAGE_FILE_ENV = "LOOPENGT_USAGE_FILE"  # where an agent may write what its work used (step's usage)
# one agent call: (output, error, usage, why usage is unknown, seconds)
Called = tuple[Any, str | None, Usage | None, str | None, float]


class AgentCannotStart(LoopengtError):
    """The agent command could not be started at all (not found, not executable)."""

    code = "agent_cannot_start"


def parse_output(stdout: str) -> Any:
    """An agent's stdout as the task's output: JSON when it parses, else the text.

    Raises:
        InvalidArgument: JSON nested past the depth limit.
    """
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:  # JSON nested past Python's parser: past the depth limit too
        raise too_deep("the agent's output", MAX_JSON_DEPTH.get()) from None


def read_usage(path: Path) -> tuple[Usage | None, str | None]:
    """The usage an agent wrote to `$LOOPENGT_USAGE_FILE` (JSON, as `step`'s usage), and why it could not
    be taken: no file is unknown usage, never zero; a bad one is unknown usage with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {USAGE_FILE_ENV}: {exc.strerror or exc}"
    try:
        return parse_usage(checked(json.loads(text), "usage", MAX_USAGE_BYTES)[0]), None
    except ValueError:
        return None, f"{USAGE_FILE_ENV} does not hold JSON"
    except LoopengtError as exc:
        return None, exc.message


def call_agent(
    argv: list[str],
    payload: dict[str, Any],
    cwd: str,
    on_stderr: Callable[[str], None] | None = None,
    *,
    usage_file: Path | None = None,
) -> tuple[Any, str | None]:
    """(output, None) on success, (None, error) when the agent command failed.

    Its stderr is read as it comes (each line to `on_stderr`) and its tail kept for the error.
    `usage_file`: named to the agent as $LOOPENGT_USAGE_FILE, where it may write what the work used.

    Raises:
        AgentCannotStart: the program cannot be started (not found, not executable).
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, USAGE_FILE_ENV: str(usage_file)} if usage_file is not None else None,
        )
    except FileNotFoundError:
        raise AgentCannotStart(f"agent command not found: {argv[0]} (from {cwd})") from None
    except PermissionError:
        raise AgentCannotStart(f"agent command {argv[0]} cannot start: permission denied") from None
    except OSError as exc:
        raise AgentCannotStart(f"agent command {argv[0]} cannot start: {exc.strerror or exc}") from None
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stderr: deque[str] = deque(maxlen=200)

    def feed(stream: IO[str]) -> None:
        try:
            stream.write(json.dumps(payload))
            stream.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the agent did not read its task; its exit status says the rest

    def drain(stream: IO[str]) -> None:
        for line in stream:
            stderr.append(line.rstrip("\n"))
            if on_stderr is not None and line.strip():
                on_stderr(line.rstrip())

    threads = [
        threading.Thread(target=feed, args=(proc.stdin,), daemon=True),
        threading.Thread(target=drain, args=(proc.stderr,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        stdout = proc.stdout.read()
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    for thread in threads:
        thread.join(timeout=5)
    if code != 0:
        detail = "\n".join(stderr).strip()[-ERROR_TAIL_CHARS:] or f"the agent command exited with code {code}"
        return None, detail
    return parse_output(stdout), None
