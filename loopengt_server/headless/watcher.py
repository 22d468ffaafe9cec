"""A thread that reads a run's events while it is driven, to say which gate or command runs and how it ended."""

from __future__ import annotations

import contextlib
import threading

from rich.text import Text

from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import (
    ApprovalRequested,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    Event,
    GateFailed,
    GatePassed,
    RetryScheduled,
    StepFailed,
)
from loopengt_core.service.metrics import MetricsFold
from loopengt_core.service.reading import RunReader
from loopengt_server.headless.progress import Progress, last_lines, short

WATCH_SECONDS = 0.25


class Watcher:
    """Reads the run's events while `Runs.step` works, to show which gate or command step runs and how it ended.

    It folds the log through a reader on a store handle of its own (no lock, no writes); the driver calls
    `catch_up()` after each step so that everything is said before the next task is.
    """

    def __init__(self, reader: RunReader, run_id: str, progress: Progress) -> None:
        self.reader = reader
        self.run_id = run_id
        self.progress = progress
        self.fold = MetricsFold()
        self._commands: dict[str, CommandRequested] = {}
        self._durations: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loopengt-watch", daemon=True)
        for event in reader.events(run_id):  # what happened before this command: counted, not said
            self._fold(event, say=False)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(LoopengtError):
            self.catch_up()

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            try:
                self.catch_up()
            except LoopengtError:  # a busy or briefly unreadable store: the next poll reads it
                continue

    def catch_up(self) -> None:
        """Fold and print the run's events recorded since the last look (from any process)."""
        with self._lock:
            after = self.fold.state.seq if self.fold.state is not None else 0
            for event in self.reader.events(self.run_id, after=after):
                self._fold(event, say=True)

    def _fold(self, event: Event, *, say: bool) -> None:
        self.fold.add(event)
        p = self.progress
        match event:
            case CommandRequested():
                self._commands[event.command_id] = event
            case CommandStarted() if say and event.command_id in self._commands:
                self._started(self._commands[event.command_id])
            case CommandFinished() if event.command_id in self._commands:
                self._finished(self._commands[event.command_id], event, say=say)
            case GatePassed() if say:
                took = self._durations.pop(event.gate, None)
                timing = f" ({took:.1f} s)" if took is not None else ""
                p.say(Text.assemble(f"  {self._gate(event.gate, event.step)}: ", ("pass", "green"), timing))
            case GateFailed() if say:
                took = self._durations.pop(event.gate, None)
                timing = f" ({took:.1f} s)" if took is not None else ""
                p.say(Text.assemble(f"  {self._gate(event.gate, event.step)}: ", ("fail", "red"), timing))
                for line in last_lines(event.feedback or ""):
                    p.say(Text(f"    | {line}", style="dim"))
            case RetryScheduled() if say:
                p.say(f"  retrying step {event.step} (attempt {event.attempt})")
            case StepFailed() if say:
                p.say(Text(f"  step {event.step} failed: {short(event.reason or '')}", style="red"))
            case ApprovalRequested() if say:
                p.now_doing(f"waiting for approval of gate {event.gate}", step=event.step)

    def _gate(self, gate: str, step: str) -> str:
        """`gate NAME`, and with --jobs above 1 the branch it is about: `gate NAME (step)`."""
        return f"gate {gate} ({step})" if self.progress.parallel else f"gate {gate}"

    def _started(self, command: CommandRequested) -> None:
        p = self.progress
        argv = " ".join(command.argv)
        if command.kind == "gate":
            p.now_doing(f"gate {command.gate}", step=command.step, detail=short(argv, 80))
            what = self._gate(str(command.gate), command.step)
        else:
            p.now_doing("command", step=command.step, attempt=0, detail=short(argv, 80))
            what = f"step {command.step} (command)"
        if not p.live:  # a log has no live line: say what starts, so a long gate is not silence
            p.say(f"  {what}: running {short(argv, 100)}")

    def _finished(self, command: CommandRequested, event: CommandFinished, *, say: bool) -> None:
        seconds = event.duration_seconds
        if command.kind == "gate":
            self._durations[str(command.gate)] = seconds
            return
        if not say:
            return
        how = "timed out" if event.timed_out else f"exit {event.exit_code}"
        ok = event.exit_code == 0 and not event.timed_out
        mark = Text("ok", style="green") if ok else Text("failed", style="red")
        self.progress.say(
            Text.assemble(f"  step {command.step} (command): ", mark, f" ({how}, {seconds:.1f} s)")
        )
        if not ok:
            for line in last_lines(event.output):
                self.progress.say(Text(f"    | {line}", style="dim"))
