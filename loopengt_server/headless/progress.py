"""What `run` prints while it drives a run: the live line on a terminal, plain lines elsewhere."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from loopengt_core.model.state import Command, TaskView
from loopengt_core.service.commands import Peek

TAIL_LINES = 3  # lines of the agent's stderr / a gate's output shown
LINE_CHARS = 160  # the longest line the terminal shows


def short(text: str, limit: int = LINE_CHARS) -> str:
    """`text` on one line of at most `limit` characters (cut with an ellipsis)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def last_lines(text: str, count: int = TAIL_LINES) -> list[str]:
    """The last `count` non-blank lines of `text`, each shortened: the tail of a stderr or a gate's output."""
    return [short(x) for x in text.strip().splitlines() if x.strip()][-count:]


def clock(seconds: float) -> str:
    """Elapsed seconds as m:ss, or h:mm:ss from an hour on."""
    whole = int(seconds)
    return (
        f"{whole // 60}:{whole % 60:02d}"
        if whole < 3600
        else f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    )


@dataclass
class _Branch:
    """A parallel branch's agent, gate or command running now (`--jobs` above 1): one live line each."""

    attempt: int
    doing: str
    since: float
    detail: str = ""


class Progress:
    """What `run` prints: the live line on a terminal, plain lines otherwise, only the summary when quiet.

    With `--jobs` above 1 the live line is a line per running branch (step, attempt, what runs there,
    its elapsed time), under a line with the total; plain lines name the branch they are about."""

    def __init__(self, console: Console, *, quiet: bool = False, live: bool | None = None) -> None:
        self.console = console
        self.quiet = quiet
        self.live = (console.is_terminal and not console.is_dumb_terminal) if live is None else live
        self.started = time.monotonic()
        self.step = ""
        self.attempt = 0
        self.doing = ""
        self.doing_since = self.started
        self.detail = ""
        self.peek: Peek | None = None  # the running gate's / command's output so far
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.parallel = False  # --jobs above 1: lines name the step (branch) they are about
        self.branches: dict[str, _Branch] = {}  # the branches running at once, by step
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="cyan")

    def __enter__(self) -> Progress:
        if self.live and not self.quiet:
            self._live = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, text: str | Text) -> None:
        """A line that stays (above the live line on a terminal)."""
        if self.quiet:
            return
        with self._lock:
            if isinstance(text, Text):
                self.console.print(text, highlight=False)
            else:
                self.console.print(text, highlight=False, markup=False)

    def now_doing(
        self, what: str, *, step: str | None = None, attempt: int | None = None, detail: str = ""
    ) -> None:
        """What runs now (`agent coder`, `gate tests`), shown with its elapsed time; `detail` (an argv) last.
        About a running branch's step: that branch's line."""
        with self._lock:
            branch = self.branches.get(step) if step is not None else None
            if branch is not None:
                if what != branch.doing:
                    branch.since = time.monotonic()
                branch.doing, branch.detail = what, detail
                if attempt:
                    branch.attempt = attempt
                return
            self.detail = detail
            if step is not None:
                self.step = step
            if attempt is not None:
                self.attempt = attempt
            if what != self.doing:
                self.doing_since = time.monotonic()
                self.tail.clear()
                self.peek = None
            self.doing = what

    def branch_started(self, task: TaskView, where: str) -> None:
        """A branch's agent starts (`--jobs`): its own live line; a plain line says where it works."""
        with self._lock:
            self.branches[task.step] = _Branch(task.attempt, f"agent {task.agent}", time.monotonic())
        if not self.live:
            self.say(f"  agent ({task.step}): running, attempt {task.attempt}, in {where}")

    def branch_ended(self, step: str) -> None:
        """A branch's task was submitted and judged: its line goes."""
        with self._lock:
            self.branches.pop(step, None)

    def command_started(self, command: Command, peek: Peek) -> None:
        """`Runs(on_command=...)`: a gate or a command step starts in this process; its output shows live."""
        what = f"gate {command.gate}" if command.kind == "gate" else "command"
        self.now_doing(what, step=command.step, detail=short(" ".join(command.argv), 80))
        with self._lock:
            self.peek = peek

    def output_line(self, line: str) -> None:
        """A line of the agent's stderr as it comes: shown under the live line (kept for the tail)."""
        with self._lock:
            self.tail.append(short(line))

    def _render(self) -> RenderableType:
        with self._lock:
            now = time.monotonic()
            parts = []
            if self.step:
                parts.append(f"step {self.step}")
            if self.attempt:
                parts.append(f"attempt {self.attempt}")
            if self.doing:
                parts.append(f"{self.doing} {clock(now - self.doing_since)}")
            parts.append(f"total {clock(now - self.started)}")
            if self.detail:
                parts.append(self.detail)
            self._spinner.update(text=Text(" · ".join(parts), no_wrap=True, overflow="ellipsis"))
            branches = [
                Text(
                    "  "
                    + " · ".join(
                        [f"step {step}", f"attempt {b.attempt}", f"{b.doing} {clock(now - b.since)}"]
                        + ([b.detail] if b.detail else [])
                    ),
                    no_wrap=True,
                    overflow="ellipsis",
                )
                for step, b in self.branches.items()
            ]
            shown = last_lines(self.peek() or "") if self.peek is not None else list(self.tail)
            tail = [Text(f"  │ {x}", style="dim", no_wrap=True, overflow="ellipsis") for x in shown]
        return Group(self._spinner, *branches, *tail)
