"""Checkpoints, forks and resumes of runs, and the diff of a run's files since a point.

A checkpoint keeps a run's state (and its files' git commit) to fork from later; `resume` continues an
interrupted run (refusing files changed meanwhile unless accepted) or forks a new run from a checkpoint,
optionally into a new git worktree. Each goes through the service's transition kernel (`Runs.kernel`)
and workspace binding (`Runs.binding`).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, Field

from loopengt_core.engine import Engine
from loopengt_core.engine.view import RunView
from loopengt_core.model.budget import BudgetLimits, parse_limits
from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.model.events import AnyEvent
from loopengt_core.model.limits import MAX_USAGE_BYTES, checked, checked_text
from loopengt_core.model.state import RunState, project_run
from loopengt_core.service import workspace as git
from loopengt_core.service.binding import start_tree, unrecorded
from loopengt_core.service.inputs import fork_worktree_path, resolve
from loopengt_core.service.loaded import no_answer
from loopengt_core.service.workspace import WorkspaceDrift, WorkspaceError, WorkspaceState
from loopengt_core.service.worktree_steps import merged_diff
from loopengt_core.store import Checkpoint, check_id

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs

log = structlog.get_logger("loopengt.runs")


class CheckpointInfo(BaseModel):
    """A checkpoint of a run, as `checkpoint` and `list_checkpoints` answer."""

    checkpoint_id: str = Field(
        description="The checkpoint's id in its run (`cp-<n>`): pass it to resume to fork from it.",
    )
    seq: int = Field(description="The seq of the last event the checkpoint includes.")
    label: str | None = Field(None, description="The label it was taken with; None without one.")
    created_at: str = Field(description="When it was taken, ISO 8601 UTC.")
    commit: str | None = Field(
        None,
        description="The git commit keeping the run's files at that point; None without a git workspace.",
    )


class Forks:
    """Checkpoints, resumes and forks of the runs of one service (`Runs` delegates to it)."""

    def __init__(self, runs: Runs) -> None:
        """`runs`: the service whose kernel, binding and settings these use."""
        self.runs = runs

    def checkpoint(self, run_id: str, label: str | None = None) -> CheckpointInfo:
        """Take a checkpoint of the run now (its state, and its files' git commit when it has a workspace), to
        fork from later with resume."""
        self.runs.kernel.known(run_id)
        if label is not None and (not isinstance(label, str) or len(label) > 200):
            raise InvalidArgument("label must be text of at most 200 characters")
        holder: dict[str, str] = {}
        root = self.runs.kernel.root(run_id)
        try:
            current = self.runs.binding.snapshot(root) if root is not None else None
        except WorkspaceError as exc:
            raise unrecorded(
                exc, run_id, "No checkpoint was taken: once that is fixed, take it again"
            ) from None

        def decide(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
            holder["id"] = checkpoint_id = f"cp-{state.checkpoints + 1}"
            kept = None
            if current is not None and root is not None:
                ref = f"refs/loopengt/{run_id}/{checkpoint_id}"
                message = f"loopengt checkpoint {checkpoint_id} of run {run_id}" + (
                    f": {label}" if label else ""
                )
                commit = git.keep(root, current.tree, current.head, ref, message)
                holder["commit"] = commit
                kept = {**current.record(), "commit": commit, "ref": ref}
            events = engine.take_checkpoint(state, checkpoint_id, label, now, workspace=kept)
            point = Checkpoint(
                run_id=run_id,
                checkpoint_id=checkpoint_id,
                seq=state.seq,
                label=label,
                created_at=state.updated_at,
                state=state.model_dump(mode="json"),
            )
            # The checkpoint before its event: one that cannot be written (disk full, a value the store
            # refuses) leaves no event. A file of this id is one whose event never landed: replace it.
            self.runs.store.discard_checkpoint(run_id, checkpoint_id)
            self.runs.store.save_checkpoint(point)
            saved.append((point, state.checkpoints))
            return events

        saved: list[tuple[Checkpoint, int]] = []
        try:
            self.runs.kernel.locked(run_id, decide, no_answer)
        except BaseException:
            if saved:
                self._discard_unrecorded(*saved[0])
            raise
        point = saved[0][0]
        return CheckpointInfo(
            checkpoint_id=point.checkpoint_id,
            seq=point.seq,
            label=label,
            created_at=point.created_at,
            commit=holder.get("commit"),
        )

    def _discard_unrecorded(self, point: Checkpoint, number: int) -> None:
        """Remove checkpoint `number` of its run when its event failed to append (the log lacks it)."""
        try:
            with self.runs.kernel.lock(point.run_id, True):
                if self.runs.kernel.sync(point.run_id).state.checkpoints < number:
                    self.runs.store.discard_checkpoint(point.run_id, point.checkpoint_id)
        except (
            LoopengtError
        ) as exc:  # the append's error is the one to report; a stray file is replaced later
            log.warning("checkpoint_not_discarded", run_id=point.run_id, error=exc.message)

    def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints, oldest first."""
        self.runs.kernel.known(run_id)
        return [
            CheckpointInfo(
                checkpoint_id=c.checkpoint_id,
                seq=c.seq,
                label=c.label,
                created_at=c.created_at,
                commit=(c.state.get("workspace") or {}).get("commit"),
            )
            for c in self.runs.store.list_checkpoints(run_id)
        ]

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
        """Continue an interrupted run (pending commands run), or fork a new run from a checkpoint.

        A run whose files changed outside the loop since its last recorded step continues only with
        `accept_drift` (the new state is recorded). `worktree`: fork into a new git worktree at that
        path, holding the checkpoint's files; the fork's commands run there. `budget` raises the run's
        limits ({max_tokens, max_cost_usd, max_wall_seconds}); `hint` is feedback to the next attempt.
        """
        self.runs.kernel.known(run_id)
        limits = parse_limits(checked(budget, "budget", MAX_USAGE_BYTES)[0] if budget is not None else None)
        hint = checked_text(hint, "hint")
        if checkpoint_id is not None and (limits is not None or hint is not None):
            raise InvalidArgument("budget and hint continue this run: give them without checkpoint_id")
        if not isinstance(accept_drift, bool):
            raise InvalidArgument("accept_drift must be true or false")
        if worktree is not None:
            worktree = str(fork_worktree_path(worktree, self.runs.cwd, self.runs.confine_paths))
        if checkpoint_id is None:
            if worktree is not None:
                raise InvalidArgument(
                    "worktree needs checkpoint_id: the worktree holds a checkpoint's files "
                    "(take one with checkpoint, then resume(run_id, checkpoint_id, worktree=PATH))"
                )
            return self._continue(run_id, accept_drift, limits, hint)
        check_id(checkpoint_id, "checkpoint_id")
        point = self.runs.store.get_checkpoint(run_id, checkpoint_id)
        parent = self.runs.kernel.read(run_id)
        at_checkpoint = RunState.model_validate(point.state)
        new_id = f"{run_id[:48]}-fork-{secrets.token_hex(3)}"
        current: WorkspaceState | None = None
        if worktree is not None:
            current = self.runs.binding.add_worktree(
                run_id, checkpoint_id, at_checkpoint, resolve(worktree, self.runs.cwd)
            )
        events = parent.engine.fork(
            at_checkpoint,
            run_id=new_id,
            checkpoint_id=checkpoint_id,
            checkpoint_seq=point.seq,
            now=self.runs.clock(),
            workspace=current.start_record() if current is not None else None,
        )
        try:
            self.runs.store.create_run(new_id, parent.spec_text, events)
        except BaseException:
            if worktree is not None and at_checkpoint.workspace is not None:
                git.remove_worktree(at_checkpoint.workspace.root, resolve(worktree, self.runs.cwd))
            raise
        if self.runs.tracer is not None:
            self.runs.tracer.record(self.runs.store, new_id, project_run(events), events)
        log.info("run_forked", run_id=new_id, parent_run_id=run_id, checkpoint_id=checkpoint_id)
        return self.runs.pump_and_view(new_id, current)

    def diff(self, run_id: str, checkpoint_id: str | None = None, *, stat: bool = False) -> str:
        """`git diff` from the run's first recorded files (or a checkpoint's) to the work tree as it is now."""
        self.runs.kernel.known(run_id)
        state = self.runs.kernel.read(run_id).state
        if state.workspace is None:
            raise WorkspaceError(
                f"run '{run_id}' records no files (its spec says workspace: none, or it did not start in a git "
                "work tree)",
                run_id=run_id,
            )
        if checkpoint_id is not None:
            check_id(checkpoint_id, "checkpoint_id")
            found = RunState.model_validate(
                self.runs.store.get_checkpoint(run_id, checkpoint_id).state
            ).workspace
            base = found.tree if found is not None else None
        else:
            base = start_tree(self.runs.store.events(run_id, limit=1)[0])
        if base is None:
            raise WorkspaceError(f"{checkpoint_id or 'the start'} of run '{run_id}' recorded no files")
        root = Path(state.workspace.root)
        return git.diff(root, base, self.runs.binding.snapshot(root).tree, stat=stat) + merged_diff(
            run_id, state, stat=stat
        )

    def _continue(
        self, run_id: str, accept_drift: bool, budget: BudgetLimits | None = None, hint: str | None = None
    ) -> RunView:
        """resume without a checkpoint: refuse files changed meanwhile unless accepted, then go on."""
        root = self.runs.kernel.live_root(run_id)
        try:
            current = self.runs.binding.snapshot(root) if root is not None else None
        except WorkspaceError as exc:
            raise unrecorded(
                exc,
                run_id,
                f"Once that is fixed, resume it again (`loopengt run --resume {run_id} --agent CMD`)",
            ) from None

        def decide(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
            events: list[AnyEvent] = []
            recorded = state.workspace
            if (
                current is not None
                and recorded is not None
                and not state.ended
                and current.tree != recorded.tree
            ):
                changed = git.changed_paths(recorded.root, recorded.tree, current.tree)
                if not accept_drift:
                    names = ", ".join(changed[:20]) + (
                        f" and {len(changed) - 20} more" if len(changed) > 20 else ""
                    )
                    raise WorkspaceDrift(
                        f"run '{run_id}': files changed outside the loop since its last recorded step "
                        f"(seq {recorded.seq}): {names}. Review them (`loopengt diff {run_id}`); to continue with "
                        f"them, resume with accept_drift=true (`loopengt resume {run_id} --accept-drift`); else "
                        "restore them first",
                        changed=changed,
                        run_id=run_id,
                    )
                events += engine.accept_workspace(state, current.record(), changed, now)
            return events + engine.resume(state, now, budget=budget, hint=hint)

        self.runs.kernel.transition(run_id, decide)
        return self.runs.pump_and_view(run_id, current)
