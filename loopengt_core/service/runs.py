"""The runs service: what the MCP layer and the CLI call. It loads, decides, appends, answers.

`Runs` is a thin service over its collaborators in `loopengt_core.service`: every transition goes through
the transition kernel (`loopengt_core.service.kernel`: under the store's per-run lock, bring the cached
state up to the log's end, enforce deadlines, let the engine decide, append durably, then answer); the
runs' files through the workspace binding (`loopengt_core.service.binding`); tool arguments through
`loopengt_core.service.inputs`. Commands (command steps and gates) run outside the lock, on the command
runner's worker threads (`commandrunner`): a call that makes commands due answers once they are done or
after LOOPENGT_CALL_WAIT seconds, whichever comes first, and the commands go on;
`get_run(wait_seconds=...)` waits for the next change (`loopengt_core.service.settling`). A step takes one
lock cycle for its decision (which also claims the first command it makes due) and one per command's
outcome (which claims the next); `loopengt_core.service.async_submit` runs a quick one on the event loop."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from loopengt_core.engine.view import RunSummary, RunView, StepAnswer, run_view
from loopengt_core.model.errors import Conflict, InvalidArgument
from loopengt_core.model.events import AnyEvent
from loopengt_core.model.limits import CALL_WAIT, checked_text
from loopengt_core.model.spec import ApprovalChannel, LoopSpec
from loopengt_core.model.state import Command
from loopengt_core.model.transcripts import TranscriptClient
from loopengt_core.service import approvals, listing, settling, telemetry, transcript_usage
from loopengt_core.service.binding import WorkspaceBinding
from loopengt_core.service.commandrunner import CommandRunner
from loopengt_core.service.commands import Peek
from loopengt_core.service.forks import CheckpointInfo, Forks
from loopengt_core.service.inputs import spec_file_text
from loopengt_core.service.kernel import TransitionKernel
from loopengt_core.service.loaded import nothing
from loopengt_core.service.reading import RunReader
from loopengt_core.service.starting import start_run
from loopengt_core.service.submitting import answer_for, submit_output
from loopengt_core.service.workspace import WorkspaceError, WorkspaceState
from loopengt_core.service.worktree_steps import prune
from loopengt_core.store import Store

log = structlog.get_logger("loopengt.runs")


V = TypeVar("V", bound=RunView)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Runs:
    """Start, drive and inspect runs on one store. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        store: Store,
        *,
        cwd: str | Path | None = None,
        clock: Callable[[], datetime] = _utcnow,
        allow_inline_commands: bool = False,
        max_output_bytes: int | None = None,
        confine_paths: bool = False,
        snapshot_every: int | None = None,
        tracer: telemetry.RunTracer | None = None,
        on_command: Callable[[Command, Peek], None] | None = None,
        cached_runs: int | None = None,
        call_wait: float | None = None,
    ) -> None:
        """`tracer`: OpenTelemetry spans of the runs (default: as the OTEL_* variables say, usually none).

        `cached_runs`: run states kept in memory (default LOOPENGT_CACHED_RUNS, else 64), least recently
        used dropped first; a dropped run is loaded again (snapshot + the events after it) when next used.

        `on_command(command, peek)`: told when this process starts a command (a gate, a command step);
        `peek()` reads its output so far (see `commands.run_command`). For progress displays.

        `confine_paths`: the paths callers give (`spec_path`, `worktree`) name files of a client, not of
        the person at the terminal: they must lie inside `cwd` (the project root; a fork's worktree
        inside its `.loopengt/worktrees/`), and a spec file that is not a loop spec is never quoted.
        `max_output_bytes`: instead of LOOPENGT_MAX_OUTPUT_BYTES.

        `call_wait`: how long a call waits for the commands it made due (default LOOPENGT_CALL_WAIT, else
        20 s); `math.inf` waits until they are done (the CLI, headless runs).
        """
        self.store = store
        self.reader = RunReader(store)  # for watchers: reads that take no lock and never append
        self.cwd = Path(cwd or os.getcwd())
        self.binding = WorkspaceBinding(store, self.cwd)  # the runs' files in git
        self.clock = clock
        self.allow_inline_commands = allow_inline_commands
        self.max_output_bytes = max_output_bytes
        self.confine_paths = confine_paths
        self.snapshot_every = snapshot_every or store.snapshot_every
        if call_wait is None:
            CALL_WAIT.get()  # a bad value is a clear error now, not at the first step
        elif not call_wait > 0:
            raise InvalidArgument(f"call_wait must be a number of seconds above 0 (got {call_wait!r})")
        self.call_wait = call_wait
        self.tracer = tracer if tracer is not None else telemetry.from_env()
        self.kernel = TransitionKernel(
            store,
            clock=clock,
            tracer=self.tracer,
            snapshot_every=self.snapshot_every,
            cached_runs=cached_runs,
            on_pause=lambda run_id, label: self.checkpoint(run_id, label=label),
        )
        self.commands = CommandRunner(
            self.kernel, cwd=self.cwd, snapshot=self.binding.snapshot, on_command=on_command
        )
        self.runner = self.commands.runner
        self.forks = Forks(self)  # checkpoints, resumes, forks
        self.feed = self.kernel.feed  # the store's push feed of changes, when it has one

    # --- the service -------------------------------------------------------------------------

    def start_run(
        self,
        *,
        spec_path: str | None = None,
        template: str | None = None,
        spec: Any = None,
        inputs: dict[str, Any] | None = None,
        run_id: str | None = None,
        context_from: list[str] | None = None,
    ) -> RunView:
        """Start a run of a spec file, a built-in template or an inline spec (YAML/JSON text or object).

        `context_from`: earlier runs whose outputs the tasks' input.memory carries, after the spec's own
        `context_from` (see `loopengt_core.service.memory`; `loopengt_core.service.starting.start_run` does it).
        """
        return start_run(
            self,
            spec_path=spec_path,
            template=template,
            spec=spec,
            inputs=inputs,
            run_id=run_id,
            context_from=context_from,
        )

    def step(
        self,
        run_id: str,
        task_id: str,
        output: Any = None,
        *,
        outcome: str = "success",
        error: str | None = None,
        run_commands: bool = True,
        wait: bool = True,
        usage: Any = None,
        submitted_by: str | None = None,
        settle_next: bool = False,
    ) -> StepAnswer:
        """Submit a task's output. The same submission twice gets the same answer and appends nothing
        (`loopengt_core.service.submitting.submit_output` says how).

        `run_commands=False`: return as soon as the decision is durable, with `commands_pending` set
        when commands are due; `settle` starts them and answers then. `settle_next`: the caller calls
        `settle` next, so the decision already claims the first command for this process.
        `wait=False`: raise LockBusy, having done nothing, when the run's lock is held elsewhere.
        """
        return submit_output(
            self,
            run_id,
            task_id,
            output,
            outcome=outcome,
            error=error,
            run_commands=run_commands,
            wait=wait,
            usage=usage,
            submitted_by=submitted_by,
            settle_next=settle_next,
        )

    def settle(self, run_id: str, task_id: str, current: WorkspaceState | None = None) -> StepAnswer:
        """Start the commands a submission made due, wait for them up to the call's bound, then answer for
        `task_id` as `step` does: with their results, or (still running) with them under `checking`.

        A repeat of the same submission lands here too: it starts no second run of a command (one worker
        per run, and a claimed command is not claimed again while its runner lives). The answer is read
        from the cycle that recorded the last command's outcome (`settling.settled_then`)."""
        # the files are read again: the commands may have changed them since `current`
        return self.shown(settling.settled_then(self, run_id, answer_for(self, run_id, task_id)))

    def get_run(self, run_id: str, wait_seconds: float = 0.0) -> RunView:
        """The run's view. `wait_seconds` (at most the call's bound, LOOPENGT_CALL_WAIT): answer as soon as the
        run changes (a command finishes, a task opens, the run ends), else at the bound with the same view.

        A due command that nobody runs (its runner died) is started here, so waiting on it ends.
        """
        return settling.get_run(self, run_id, wait_seconds)

    # --- bounded waits ---------------------------------------------------------------------------

    def wait_bound(self) -> float:
        """How long a call waits for commands: `call_wait`, else LOOPENGT_CALL_WAIT (default 20 s)."""
        return self.call_wait if self.call_wait is not None else float(CALL_WAIT.get())

    def wait_for_change(self, run_id: str, after_seq: int, timeout: float) -> int:
        """Wait until the run's log passes `after_seq` or `timeout` seconds pass; returns the latest seq
        (`TransitionKernel.wait_for_change`)."""
        return self.kernel.wait_for_change(run_id, after_seq, timeout)

    def announce(self) -> None:
        """Wake the waits of this process (an append happened, or a command worker ended)."""
        self.kernel.announce()

    def settled(self, run_id: str) -> bool:
        """True when no command of the run is running or due, here or elsewhere (`settling.settled`)."""
        return settling.settled(self, run_id)

    def close(self) -> None:
        """This process is done with the store: end the commands it runs, unrecorded (the next server runs
        them again), and stop listening for changes. The store itself is the caller's to close."""
        self.commands.close()
        if self.feed is not None:
            self.feed.close()

    def stop_commands(self, run_id: str, by: str) -> int:
        """Stop each command of the run that this process runs: its process group gets SIGTERM, SIGKILL a
        second later; the outcome is recorded as a cancelled attempt naming `by` (the policy then retries or
        fails the step as for a failed gate). Returns how many it stopped."""
        self.kernel.known(run_id)
        stopped = self.commands.stop(run_id, by)
        if stopped:
            log.info("commands_stopped", run_id=run_id, count=stopped, by=by)
        return stopped

    def recover(self) -> list[str]:
        """Start the commands of runs whose commands are due and unclaimed, or whose runner died (a server
        starting up calls this). Returns those runs' ids."""
        return settling.recover(self)

    def shown(self, view: V, current: WorkspaceState | WorkspaceError | None = None) -> V:
        """`view` with the work tree's drift and the last output line of each command running here
        (`settling.shown`)."""
        return settling.shown(self, view, current)

    def list_runs(self, *, status: str | None = None, limit: int = 50) -> list[RunSummary]:
        """The runs in the store, newest first, at most `limit`, optionally of one status. A run that cannot
        be read is listed as corrupt or unreadable, never hidden (`service.listing`)."""
        return listing.list_runs(self.store, self.kernel, status=status, limit=limit)

    def cancel_run(self, run_id: str, reason: str | None = None) -> RunView:
        """Cancel a run: it ends at once, and the commands it still has running are killed without recording a
        result."""
        self.kernel.known(run_id)
        reason = checked_text(reason, "reason")
        view = self.kernel.locked(
            run_id,
            lambda e, s, now: e.cancel(s, reason or "cancelled by request", now),
            lambda run: run_view(run.state),
        )
        self.commands.stop(run_id, "cancel_run")  # an ended run's commands are killed, nothing recorded
        return view

    def fail_run(self, run_id: str, reason: str) -> RunView:
        """End a run `failed` with `reason` (a driver that cannot go on, so that nothing waits on it)."""
        self.kernel.known(run_id)
        view = self.kernel.locked(
            run_id, lambda e, s, now: e.fail(s, reason, now), lambda run: run_view(run.state)
        )
        self.commands.stop(run_id, "fail_run")  # an ended run's commands are killed, nothing recorded
        return view

    def approve(
        self,
        run_id: str,
        *,
        approved: bool = True,
        comment: str | None = None,
        by: str = "a person",
        via: ApprovalChannel = "cli",
        client: str | None = None,
        task_id: str | None = None,
    ) -> RunView:
        """Answer the approval gate a run waits at, from a person through `via` (the CLI, MCP elicitation
        in `client`, the web view). Refused when the gate's spec does not take answers through `via`.
        `task_id`: the task whose approval the person was shown; refused if another one waits by now."""
        approvals.answer(
            self.kernel,
            run_id,
            approved=approved,
            comment=comment,
            by=by,
            via=via,
            client=client,
            task_id=task_id,
        )
        return self.pump_and_view(run_id)

    def checkpoint(self, run_id: str, label: str | None = None) -> CheckpointInfo:
        """Take a checkpoint of the run now (its state, and its files' git commit when it has a workspace), to
        fork from later with resume (`Forks.checkpoint`)."""
        return self.forks.checkpoint(run_id, label)

    def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints, oldest first."""
        return self.forks.list_checkpoints(run_id)

    def resume(
        self,
        run_id: str,
        checkpoint_id: str | None = None,
        *,
        accept_drift: bool = False,
        worktree: str | None = None,
        budget: Any = None,
        hint: str | None = None,
    ) -> RunView:
        """Continue an interrupted run (pending commands run), or fork a new run from a checkpoint
        (`Forks.resume` says how)."""
        return self.forks.resume(
            run_id, checkpoint_id, accept_drift=accept_drift, worktree=worktree, budget=budget, hint=hint
        )

    def diff(self, run_id: str, checkpoint_id: str | None = None, *, stat: bool = False) -> str:
        """`git diff` from the run's first recorded files (or a checkpoint's) to the work tree as it is now."""
        return self.forks.diff(run_id, checkpoint_id, stat=stat)

    def read_transcript(self, run_id: str, path: str | Path, *, client: TranscriptClient) -> list[AnyEvent]:
        """Record the usage in a client's transcript since the run last read it (the stop and session
        hooks call this with the payload's `transcript_path`); returns the usage_read events appended
        (`service.transcript_usage`)."""
        return transcript_usage.read(self.kernel, run_id, path, client=client)

    def trace(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        """The run's events after seq `after`, at most `limit`."""
        self.kernel.known(run_id)
        return self.store.events(run_id, after=after, limit=limit)

    def spec_of(self, run_id: str) -> LoopSpec:
        """The loop spec the run follows, as it was stored when the run started."""
        return self.kernel.read(run_id).engine.spec

    def pump(self, run_id: str) -> RunView:
        """Start the run's due commands now and answer within the call's bound (as `resume` does)."""
        self.kernel.known(run_id)
        return self.pump_and_view(run_id)

    def approval_request(self, run_id: str) -> dict[str, Any] | None:
        """What a person is asked to approve (step, gate, prompt, the output), or None if nothing waits."""
        return approvals.request(self.kernel, run_id)

    # --- transitions -------------------------------------------------------------------------

    def pump_and_view(self, run_id: str, current: WorkspaceState | None = None) -> RunView:
        """Start the run's due commands, wait for them up to the call's bound, and answer with the view.

        The cycle that reads the view also claims the first command due now, for the worker started next."""
        view, pending = self.kernel.locked(
            run_id,
            nothing,
            lambda run: (run_view(run.state), bool(run.state.due_commands())),
            claim=self.commands.claim(run_id),
        )
        if pending:
            view = settling.settled_then(self, run_id, lambda run: run_view(run.state))
            current = None  # the commands may have changed the files: read them again
        return self.shown(view, current)

    # --- the run's files (git) ---------------------------------------------------------------

    def prune_worktrees(self, run_id: str) -> list[str]:
        """Remove the worktrees of an ended run, and its isolated steps' branches (the joins' branches,
        the run's result, stay); finishes what a crash mid-fork or mid-merge left. Returns what went."""
        state = self.kernel.read(run_id).state
        if not state.ended:
            raise Conflict(f"run '{run_id}' has not ended: its worktrees are in use", run_id=run_id)
        return prune(run_id, state)

    def spec_file_text(self, spec_path: Any) -> str:
        """The text of the spec file at `spec_path` (relative to `cwd`); confined when paths are."""
        return spec_file_text(spec_path, self.cwd, self.confine_paths)
