"""The command runner: runs a run's due commands (command gates, command steps) on a worker thread.

A command outlives the call that made it due: the call answers within LOOPENGT_CALL_WAIT and the worker
goes on. Each command is claimed with a lease event naming this process (`host:pid`) before it starts
and its result is recorded as an event, so replay never runs a command again. A claim whose runner is
gone (a process on this host that no longer exists, or a lease that ran out) is taken over, and the
trace records the abandoned claim (`command_abandoned`) before the new one. Every command runs in a
process group of its own, so stopping it (`stop`) ends the test runner's workers too.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from loopengt_core.engine import Engine
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import AnyEvent, iso, parse_iso
from loopengt_core.model.state import LEASE_GRACE_SECONDS, Command, RunState
from loopengt_core.service.commands import CommandResult, Peek, run_command
from loopengt_core.service.workspace import WorkspaceError, WorkspaceState

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs

log = structlog.get_logger("loopengt.commands")

MAX_IDLE_SLEEP_SECONDS = 300.0
STOP_WAIT_SECONDS = 5.0  # how long `stop` waits for a stopped command's outcome to be recorded
Abandoned = Literal["runner_died", "lease_expired"]


@dataclass
class Running:
    """A command this process is running now."""

    command: Command
    started_at: str
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    peek: Peek | None = None
    cancelled_by: str | None = None

    def last_line(self) -> str | None:
        """The last non-empty line of its output so far (None before any, or once it ended)."""
        text = self.peek() if self.peek is not None else None
        if not text:
            return None
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1][-300:] if lines else None


def runner_gone(runner: str, lease_until: str, now: datetime, me: str) -> Abandoned | None:
    """Why a claim may be taken over (its runner died on this host, its lease ran out), or None."""
    if parse_iso(lease_until) <= now:
        return "lease_expired"
    host, _, pid = runner.rpartition(":")
    if runner == me or host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return "runner_died"  # no need to wait out the lease
    except PermissionError:
        return None
    return None


class CommandRunner:
    """Runs the due commands of a `Runs` service's runs, one worker thread per run with due commands."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.runner = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._workers: dict[str, threading.Thread] = {}
        self._again: set[str] = set()
        self._running: dict[str, dict[str, Running]] = {}
        self._closing = threading.Event()

    # --- the worker ------------------------------------------------------------------------------

    def start(self, run_id: str) -> None:
        """Make sure a worker runs `run_id`'s due commands (one worker per run; a busy one looks again)."""
        if self._closing.is_set():
            return
        with self._lock:
            worker = self._workers.get(run_id)
            if worker is not None:
                self._again.add(run_id)
                return
            worker = threading.Thread(
                target=self._work, args=(run_id,), name=f"loopengt-commands-{run_id}", daemon=True
            )
            self._workers[run_id] = worker
        worker.start()

    def busy(self, run_id: str) -> bool:
        """Whether a worker of this process is at `run_id`'s commands."""
        with self._lock:
            return run_id in self._workers

    def _work(self, run_id: str) -> None:
        try:
            while True:
                try:
                    self.pump(run_id)
                except LoopengtError as exc:
                    log.warning("commands_failed", run_id=run_id, error=exc.message)
                except Exception:
                    log.exception("commands_failed", run_id=run_id)
                with self._lock:
                    if run_id not in self._again or self._closing.is_set():
                        self._workers.pop(run_id, None)
                        return
                    self._again.discard(run_id)
        finally:
            self.runs.announce()

    def pump(self, run_id: str) -> WorkspaceState | WorkspaceError | None:
        """Run every due command of the run, one after another, until none is left or due (in this thread).

        Commands run in the run's work tree (a fork's worktree) when it has one, else in `cwd`; each
        result is recorded with the files as the command left them. Returns the files as the last one
        left them, or why they could not be recorded (its result is recorded without them); None when
        no command ran.
        """
        runs = self.runs
        root = runs.kernel.live_root(run_id)
        last: WorkspaceState | WorkspaceError | None = None
        while not self._closing.is_set():
            claimed, wait_until = self._claim_next(run_id)
            if claimed is None:
                if wait_until is None:
                    return last
                pause = (wait_until - runs.clock()).total_seconds()
                self._closing.wait(max(0.0, min(pause, MAX_IDLE_SLEEP_SECONDS)) + 0.001)
                continue
            running = Running(claimed, iso(runs.clock()))
            with self._lock:
                self._running.setdefault(run_id, {})[claimed.command_id] = running
            try:
                result = run_command(
                    claimed.argv,
                    cwd=runs.kernel.workdir(run_id, claimed.step) or (Path(root) if root else runs.cwd),
                    timeout_seconds=claimed.timeout_seconds,
                    on_start=functools.partial(self._started, running),
                    stop=running.stop,
                )
                if self._closing.is_set():
                    return last  # abandoned with the process: the next server runs it again
                current = None
                if root is not None:
                    try:
                        current = last = runs.binding.snapshot(root)
                    except WorkspaceError as exc:  # the command's result must not be lost: record it without
                        last = exc  # and the answer says why
                        log.warning("workspace_unrecorded", run_id=run_id, error=exc.message)
                by = running.cancelled_by if result.stopped else None
                self._finish(run_id, claimed.command_id, result, current, by)
            finally:
                with self._lock:
                    self._running.get(run_id, {}).pop(claimed.command_id, None)
                    if not self._running.get(run_id, True):
                        self._running.pop(run_id, None)
                running.done.set()
        return last

    def _started(self, running: Running, peek: Peek) -> None:
        running.peek = peek
        if self.runs.on_command is not None:
            self.runs.on_command(running.command, peek)

    def _claim_next(self, run_id: str) -> tuple[Command | None, datetime | None]:
        """Claim a due command with a lease event; else say when the next one falls due."""
        found: list[Command] = []
        waits: list[datetime] = []

        def claim(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
            for command in state.due_commands():  # not those paused by a setup error: resume asks again
                if parse_iso(command.not_before) > now:
                    continue
                gone: Abandoned | None = None
                if command.runner is not None and command.lease_until is not None:
                    gone = runner_gone(command.runner, command.lease_until, now, self.runner)
                    if gone is None:
                        continue  # its runner is at it
                found.append(command.model_copy())
                lease = now + timedelta(seconds=command.timeout_seconds + LEASE_GRACE_SECONDS)
                started = command.claimed_at() if gone is not None else None
                return engine.claim_command(
                    state,
                    command.command_id,
                    runner=self.runner,
                    lease_until=lease,
                    now=now,
                    abandoned=gone,
                    abandoned_at=iso(started) if started is not None else None,
                )
            if not state.ended:
                waits.extend(parse_iso(c.not_before) for c in state.due_commands() if c.runner is None)
            return []

        self.runs.kernel.transition(run_id, claim)
        return (found[0] if found else None), (min(waits) if waits else None)

    def _finish(
        self,
        run_id: str,
        command_id: str,
        result: CommandResult,
        current: WorkspaceState | None,
        cancelled_by: str | None,
    ) -> None:
        def finish(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
            command = state.commands.get(command_id)
            if command is None or command.runner != self.runner:
                return []  # cancelled meanwhile, or taken over after our lease ran out
            return engine.finish_command(
                state,
                command_id,
                exit_code=result.exit_code,
                output=result.output,
                duration_seconds=result.duration_seconds,
                timed_out=result.timed_out,
                now=now,
                workspace=current.record() if current is not None else None,
                setup_error=result.setup_error,
                cancelled_by=cancelled_by,
            )

        self.runs.kernel.transition(run_id, finish)

    # --- what callers see and do -----------------------------------------------------------------

    def running(self, run_id: str) -> list[Running]:
        """The run's commands this process is running now."""
        with self._lock:
            return list(self._running.get(run_id, {}).values())

    def stop(self, run_id: str, by: str) -> int:
        """End each command of the run this process runs (process group: SIGTERM, SIGKILL 1 s later) and
        wait until its outcome, a cancelled attempt naming `by`, is recorded. Returns how many it stopped."""
        targets = self.running(run_id)
        for running in targets:
            running.cancelled_by = by
            running.stop.set()
        for running in targets:
            running.done.wait(STOP_WAIT_SECONDS)
        return len(targets)

    def close(self) -> int:
        """The process is going away: end every command it runs without recording an outcome, so that the
        next server (its lease names a process that is gone) runs them again. Returns how many it ended."""
        self._closing.set()
        with self._lock:
            targets = [r for commands in self._running.values() for r in commands.values()]
        for running in targets:
            running.stop.set()
        for running in targets:
            running.done.wait(STOP_WAIT_SECONDS)
        return len(targets)
