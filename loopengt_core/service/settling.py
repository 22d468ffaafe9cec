"""Waiting for a run's commands within a call's bound, and reading what they left, without extra lock cycles.

A call that made commands due (`step`, `resume`, `approve`, a new run) starts them on the command runner
and waits up to its bound (`Runs.wait_bound`). Its answer is read from the run as this process's last lock
cycle of it left it (the kernel tells a watcher under the lock, `TransitionKernel.watching`): the cycle
that recorded the last command's outcome. Only when that may be behind the log (another process appended
since) does the wait take a lock cycle of its own to read. `get_run` and `recover` find due commands whose
runner is gone and start them here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog

from loopengt_core.engine.view import RunView, run_view
from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.service.commandrunner import runner_gone
from loopengt_core.service.loaded import LoadedRun, no_answer, nothing
from loopengt_core.service.workspace import WorkspaceError, WorkspaceState

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs

log = structlog.get_logger("loopengt.runs")

T = TypeVar("T")
V = TypeVar("V", bound=RunView)


class Latest(Generic[T]):
    """What the last lock cycle of a run in this process left: its seq, whether commands are due, `then(run)`."""

    def __init__(self, then: Callable[[LoadedRun], T]) -> None:
        self.then = then
        self.seq = -1  # no cycle seen yet
        self.due = True
        self.value: T | None = None
        self._guard = threading.Lock()

    def see(self, run: LoadedRun) -> None:
        """A lock cycle's end (under the run's lock)."""
        value = self.then(run)
        with self._guard:
            self.seq, self.due, self.value = run.state.seq, bool(run.state.due_commands()), value

    def read(self) -> tuple[int, bool, T | None]:
        """(seq, whether commands are due, the value) of the last cycle seen."""
        with self._guard:
            return self.seq, self.due, self.value


def settled_then(runs: Runs, run_id: str, then: Callable[[LoadedRun], T]) -> T:
    """Start the run's due commands here, wait for them up to the call's bound, and read `then` from the run.

    While this process's worker is at the run nothing is read; once it is done, the cycle that recorded
    the last outcome says whether anything is left. A lock cycle is taken only when the log has passed
    the last cycle seen here (another process appended), or none was seen."""
    latest = Latest(then)
    store = runs.store

    def current() -> tuple[int, bool, T | None]:
        seen = latest.read()
        if seen[0] != store.last_seq(run_id):
            runs.kernel.locked(run_id, nothing, no_answer)  # its end is seen too
            seen = latest.read()
        return seen

    def done() -> bool:
        return not runs.commands.busy(run_id) and not current()[1]

    with runs.kernel.watching(run_id, latest.see):
        runs.commands.start(run_id)
        runs.kernel.wait_until(done, runs.wait_bound())
        seq, _, value = latest.read()
        if value is not None and seq == store.last_seq(run_id):
            return value
    return runs.kernel.locked(run_id, nothing, then)


def settled(runs: Runs, run_id: str) -> bool:
    """True when no command of the run is running or due (here or in another process), and this process's
    worker is done with the run (what follows a result, such as a pause's checkpoint, is taken)."""
    due = runs.kernel.locked(run_id, nothing, lambda run: bool(run.state.due_commands()))
    return not due and not runs.commands.busy(run_id)


def waiting_on(runs: Runs, run: LoadedRun) -> tuple[int, bool, bool]:
    """(seq, ended, whether a due command waits for a runner that is not there): one whose claim names
    a process that is gone or a lease that ran out, or a claim handed to this process's worker that no
    worker took."""
    state = run.state
    now = runs.clock()
    orphaned = runs.commands.holds(state.run_id) or any(
        c.runner is None
        or c.lease_until is None
        or runner_gone(c.runner, c.lease_until, now, runs.runner) is not None
        for c in state.due_commands()
    )
    return state.seq, state.ended, orphaned and not runs.commands.busy(state.run_id)


def get_run(runs: Runs, run_id: str, wait_seconds: float) -> RunView:
    """`Runs.get_run`: the view, after waiting up to `wait_seconds` for a change; orphaned commands start."""
    bound = runs.wait_bound()
    if (
        not isinstance(wait_seconds, int | float)
        or isinstance(wait_seconds, bool)
        or not wait_seconds >= 0
        or math.isinf(wait_seconds)
    ):
        raise InvalidArgument(
            f"wait_seconds must be a number of seconds from 0 to {bound:g} (LOOPENGT_CALL_WAIT)"
        )
    runs.kernel.known(run_id)
    seq, ended, orphaned = runs.kernel.locked(run_id, nothing, lambda run: waiting_on(runs, run))
    if orphaned:
        runs.commands.start(run_id)
    wait = min(float(wait_seconds), bound)
    if wait > 0 and not ended:
        runs.wait_for_change(run_id, seq, wait)
    return runs.shown(runs.kernel.locked(run_id, nothing, lambda run: run_view(run.state)))


def recover(runs: Runs) -> list[str]:
    """Start the commands of runs whose commands are due and unclaimed, or whose runner died (a server
    starting up calls this). Returns those runs' ids."""
    started = []
    for run_id in runs.store.list_runs():
        try:
            _, ended, orphaned = runs.kernel.locked(run_id, nothing, lambda run: waiting_on(runs, run))
        except LoopengtError as exc:  # a damaged run is listed as such elsewhere; it runs nothing
            log.warning("recover_skipped", run_id=run_id, error=exc.message)
            continue
        if orphaned and not ended:
            runs.commands.start(run_id)
            started.append(run_id)
    return started


def shown(runs: Runs, view: V, current: WorkspaceState | WorkspaceError | None = None) -> V:
    """`view` with the work tree's drift and the last output line of each command running here.

    While commands run, the files are theirs to change: no drift is reported then."""
    if not view.checking:
        return runs.binding.drift(view, current)
    lines = {r.command.command_id: r for r in runs.commands.running(view.run_id)}
    checking = [
        check.model_copy(update={"last_output": running.last_line(), "started_at": running.started_at})
        if (running := lines.get(check.command_id)) is not None
        else check
        for check in view.checking
    ]
    return view.model_copy(update={"checking": checking})
