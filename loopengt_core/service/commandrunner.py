"""The command runner: runs a run's due commands (command gates, command steps) on a worker thread.

A command outlives the call that made it due: the call answers within LOOPENGT_CALL_WAIT and the worker
goes on. Each command is claimed with a lease event naming this process (`host:pid`) before it starts
and its result is recorded as an event, so replay never runs a command again. A claim whose runner is
gone (a process on this host that no longer exists, or a lease that ran out) is taken over, and the
trace records the abandoned claim (`command_abandoned`) before the new one. Every command runs in a
process group of its own, so stopping it (`stop`) ends the test runner's workers too.

Lock cycles: the transition that makes a command due claims it in the same cycle when this process will
run it (`claim`, handed to the worker), and the cycle that records a command's outcome claims the next
due one. A step with N commands takes N + 1 cycles of the run's lock, none spent on a claim alone.
The runner knows the runs only through `RunHost` (the transition kernel is one), so it is tested alone.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

import structlog

from loopengt_core.engine import Engine
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import AnyEvent, iso, parse_iso
from loopengt_core.model.state import LEASE_GRACE_SECONDS, Command, RunState
from loopengt_core.service.commands import CommandResult, Peek, run_command
from loopengt_core.service.loaded import Decide, LoadedRun
from loopengt_core.service.workspace import WorkspaceError, WorkspaceState

log = structlog.get_logger("loopengt.commands")

MAX_IDLE_SLEEP_SECONDS = 300.0
STOP_WAIT_SECONDS = 5.0  # how long `stop` waits for a stopped command's outcome to be recorded
Abandoned = Literal["runner_died", "lease_expired"]
Claims = tuple[Command | None, datetime | None]  # the command claimed, else when the next one falls due


class RunHost(Protocol):
    """What the runner needs of the runs it serves: their one way to change, and where commands run.

    `loopengt_core.service.kernel.TransitionKernel` implements it; a test can give a small one of its own.
    """

    def clock(self) -> datetime:
        """Now, as the runs' events record it."""
        ...

    def transition(self, run_id: str, decide: Decide) -> LoadedRun:
        """One transition under the run's lock; the run after it."""
        ...

    def cached(self, run_id: str) -> LoadedRun | None:
        """The run as last loaded in this process, if it still is (no lock)."""
        ...

    def live_root(self, run_id: str) -> str | None:
        """The run's working directory while it runs and records its files, else None."""
        ...

    def workdir(self, run_id: str, step: str) -> Path | None:
        """Where a step's commands run when not in the run's directory (an isolated step's worktree)."""
        ...

    def announce(self) -> None:
        """Wake the waits of this process."""
        ...


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
    """Runs the due commands of a host's runs, one worker thread per run with due commands."""

    def __init__(
        self,
        host: RunHost,
        *,
        cwd: Path,
        snapshot: Callable[[str], WorkspaceState],
        on_command: Callable[[Command, Peek], None] | None = None,
    ) -> None:
        """`cwd`: where commands run for a run without files of its own; `snapshot(root)`: the files as a
        command left them, recorded with its result; `on_command`: told when a command starts here."""
        self.host = host
        self.cwd = cwd
        self.snapshot = snapshot
        self.on_command = on_command
        self.runner = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._workers: dict[str, threading.Thread] = {}
        self._again: set[str] = set()
        self._running: dict[str, dict[str, Running]] = {}
        self._handed: dict[str, Command] = {}  # claimed within another transition, for the worker to run
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
            self.host.announce()

    def pump(self, run_id: str) -> WorkspaceState | WorkspaceError | None:
        """Run every due command of the run, one after another, until none is left or due (in this thread).

        Commands run in the run's work tree (a fork's worktree) when it has one, else in `cwd`; each
        result is recorded with the files as the command left them. Returns the files as the last one
        left them, or why they could not be recorded (its result is recorded without them); None when
        no command ran.
        """
        host = self.host
        root = host.live_root(run_id)
        last: WorkspaceState | WorkspaceError | None = None
        claimed = self._take_handed(run_id)
        wait_until = None
        if claimed is None:
            claimed, wait_until = self._claim_next(run_id)
        while not self._closing.is_set():
            claimed = claimed or self._take_handed(run_id)
            if claimed is None:
                if wait_until is None:
                    return last
                pause = (wait_until - host.clock()).total_seconds()
                self._closing.wait(max(0.0, min(pause, MAX_IDLE_SLEEP_SECONDS)) + 0.001)
                claimed, wait_until = self._claim_next(run_id)
                continue
            outcome = self._run(run_id, claimed, root)
            if outcome is None:
                return last  # abandoned with the process: the next server runs it again
            if outcome[1] is not None:
                last = outcome[1]
            claimed, wait_until = outcome[0]
        return last

    def _run(
        self, run_id: str, claimed: Command, root: str | None
    ) -> tuple[Claims, WorkspaceState | WorkspaceError | None] | None:
        """Run one claimed command and record its outcome, claiming the next due one in the same cycle.

        None when the process is closing (nothing recorded); else what the outcome's cycle claimed and
        the files as the command left them (or why they could not be recorded)."""
        host = self.host
        running = Running(claimed, iso(host.clock()))
        with self._lock:
            self._running.setdefault(run_id, {})[claimed.command_id] = running
        try:
            result = run_command(
                claimed.argv,
                cwd=host.workdir(run_id, claimed.step) or (Path(root) if root else self.cwd),
                timeout_seconds=claimed.timeout_seconds,
                on_start=functools.partial(self._started, running),
                stop=running.stop,
            )
            if self._closing.is_set():
                return None
            current = None
            files: WorkspaceState | WorkspaceError | None = None
            if root is not None:
                try:
                    current = files = self.snapshot(root)
                except WorkspaceError as exc:  # the command's result must not be lost: record it without
                    files = exc  # and the answer says why
                    log.warning("workspace_unrecorded", run_id=run_id, error=exc.message)
            by = running.cancelled_by if result.stopped else None
            return self._finish(run_id, claimed.command_id, result, current, by), files
        finally:
            with self._lock:
                self._running.get(run_id, {}).pop(claimed.command_id, None)
                if not self._running.get(run_id, True):
                    self._running.pop(run_id, None)
            running.done.set()

    def _started(self, running: Running, peek: Peek) -> None:
        running.peek = peek
        if self.on_command is not None:
            self.on_command(running.command, peek)

    def claim(self, run_id: str) -> Decide:
        """A decision that claims the first command due now for this process, to put last in the transition
        that makes commands due (`TransitionKernel.locked(claim=...)`); `start` then runs it without a lock
        cycle of its own. Only for a caller that starts the worker next: the lease names this process."""

        def claim(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
            if not state.commands:
                return []  # nothing pending (most steps): no lookups on the hot path
            if self._closing.is_set():
                return []  # no worker starts any more: the next server claims it
            found: list[Command] = []
            events = self._claim_due(engine, state, now, found, [])
            if found:
                with self._lock:
                    self._handed[run_id] = found[0]
            return events

        return claim

    def holds(self, run_id: str) -> bool:
        """Whether a claim was handed to the run's worker here and no worker took it yet."""
        with self._lock:
            return run_id in self._handed and run_id not in self._workers

    def _take_handed(self, run_id: str) -> Command | None:
        """The claim handed over by the transition that made it, if that transition is durable: its claim
        is in the run's state (a transition that failed to append dropped the state, and the claim with it)."""
        with self._lock:
            command = self._handed.pop(run_id, None)
        if command is None:
            return None
        run = self.host.cached(run_id)
        held = run.state.commands.get(command.command_id) if run is not None else None
        return command if held is not None and held.runner == self.runner else None

    def _claim_next(self, run_id: str) -> Claims:
        """Claim a due command with a lease event (a lock cycle of its own); else say when the next one
        falls due."""
        found: list[Command] = []
        waits: list[datetime] = []
        self.host.transition(run_id, lambda e, s, now: self._claim_due(e, s, now, found, waits))
        return (found[0] if found else None), (min(waits) if waits else None)

    def _claim_due(
        self, engine: Engine, state: RunState, now: datetime, found: list[Command], waits: list[datetime]
    ) -> list[AnyEvent]:
        """Claim the first command due now (into `found`); else put in `waits` when the unclaimed fall due."""
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

    def _finish(
        self,
        run_id: str,
        command_id: str,
        result: CommandResult,
        current: WorkspaceState | None,
        cancelled_by: str | None,
    ) -> Claims:
        """Record a command's outcome and, in the same cycle, claim the next due command."""
        found: list[Command] = []
        waits: list[datetime] = []

        def finish(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
            command = state.commands.get(command_id)
            if command is None or command.runner != self.runner:
                # cancelled meanwhile, or taken over after our lease ran out
                return self._claim_due(engine, state, now, found, waits)
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
            ) + self._claim_due(engine, state, now, found, waits)

        self.host.transition(run_id, finish)
        return (found[0] if found else None), (min(waits) if waits else None)

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
