"""Isolated steps' worktrees (`isolation: worktree`): made, merged at joins, committed and removed.

Called by the transition kernel under the run's lock (`isolate`, in the same append as what follows, so
each worktree is made once) and when a run ends; `prune` finishes what a crash left, for `loopengt prune`.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import AnyEvent, BranchesMerged, iso
from loopengt_core.model.state import RunState
from loopengt_core.service import workspace as git
from loopengt_core.service import worktrees
from loopengt_core.service.loaded import LoadedRun

log = structlog.get_logger("loopengt.runs")


def isolate(run_id: str, run: LoadedRun, now: datetime) -> list[AnyEvent]:
    """Make the worktree of each isolated step that has work in flight, and each join's merge, and
    record them (under the run's lock, in the same append as what follows, so each is made once;
    a crash before the append leaves a worktree no event names, which this makes again)."""
    engine, state = run.engine, run.state
    if not engine.isolated or state.workspace is None or state.ended:
        return []
    events: list[AnyEvent] = []
    for name in [s for s in state.active_steps() if s not in state.worktrees]:
        if name in engine.isolated:
            events += _branch_worktree(run_id, run, name, now)
        elif name in engine.joins:
            events += _join_worktree(run_id, run, name, now)
    return events


def _branch_worktree(run_id: str, run: LoadedRun, step: str, now: datetime) -> list[AnyEvent]:
    recorded = run.state.workspace
    assert recorded is not None
    tree, head = recorded.tree, recorded.head
    if run.state.line is not None:  # after a join: a branch starts from the line's files
        line = git.snapshot(run.state.line)
        tree, head = line.tree, line.head
    base = worktrees.base_commit(recorded.root, tree, head, run_id, step)
    made = worktrees.make(recorded.root, run_id, step, base)
    log.info("worktree_added", run_id=run_id, step=step, path=str(made.workdir))
    return run.engine.add_worktree(
        run.state, step, path=str(made.workdir), branch=made.branch, base=made.base, now=now
    )


def _join_worktree(run_id: str, run: LoadedRun, join: str, now: datetime) -> list[AnyEvent]:
    recorded, engine = run.state.workspace, run.engine
    assert recorded is not None
    branches = []
    for step in engine.joins[join]:
        found = run.state.worktrees.get(step)
        if found is None:
            continue  # never started (a route that skipped it): nothing to merge
        branches.append((step, worktrees.top_of(recorded.root, run_id, step), found.base))
    if not branches:
        return []
    merged = worktrees.merge(recorded.root, run_id, join, branches)
    event = BranchesMerged(
        seq=1,
        at=iso(now),
        step=join,
        path=str(merged.made.workdir),
        branch=merged.made.branch,
        base=branches[0][2],
        merged=[{"step": s, "branch": b, "commit": c} for s, b, c in merged.commits],
        commit=merged.commit,
        conflicts=[{"path": p, "hunks": h} for p, h in merged.conflicts],
    )
    log.info("branches_merged", run_id=run_id, join=join, conflicts=len(merged.conflicts))
    return engine.merge_branches(run.state, event, now)


def end_worktrees(run_id: str, run: LoadedRun) -> None:
    """A run that ended: its joins' files are committed on their branches (the run's result); on
    completion with `worktrees: delete` every worktree goes, with the isolated steps' branches.
    A failed or cancelled run keeps them for inspection (`loopengt prune` removes them)."""
    state = run.state
    if state.workspace is None:
        return
    try:
        commit_joins(run_id, state)
        if state.status != "completed" or run.engine.spec.worktrees == "keep":
            return
        for step, found in state.worktrees.items():
            top = worktrees.top_of(state.workspace.root, run_id, step)
            worktrees.remove(state.workspace.root, top, found.branch if found.kind == "branch" else None)
    except LoopengtError as exc:  # the run's end is durable; `loopengt prune` finishes this
        log.warning("worktrees_not_removed", run_id=run_id, error=exc.message)


def commit_joins(run_id: str, state: RunState) -> None:
    """Commit the files of each join's worktree on its branch (nothing new: no commit)."""
    if state.workspace is None:
        return
    for step, found in state.worktrees.items():
        top = worktrees.top_of(state.workspace.root, run_id, step)
        if found.kind == "join" and top.exists():
            worktrees.commit_files(top, f"loopengt: join {step} of run {run_id}")


def prune(run_id: str, state: RunState) -> list[str]:
    """Remove the worktrees of an ended run (`state`), and its isolated steps' branches (the joins'
    branches, the run's result, stay). Returns what went."""
    if state.workspace is None:
        return []
    commit_joins(run_id, state)
    keep = {w.branch for w in state.worktrees.values() if w.kind == "join"}
    return worktrees.prune(state.workspace.root, run_id, keep_branches=keep)


def merged_diff(run_id: str, state: RunState, *, stat: bool) -> str:
    """What each join merged (isolation: worktree): its branches, conflicts, and the diff from their
    base to the join's files (its worktree while it exists, else its branch: the run's result)."""
    assert state.workspace is not None
    root = state.workspace.root
    parts = []
    for step, found in state.worktrees.items():
        if found.kind != "join":
            continue
        merge = state.steps[step].visit_input.get("merge", {})
        steps = ", ".join(b["step"] for b in merge.get("branches", []))
        conflicts = ", ".join(c["path"] for c in merge.get("conflicts", [])) or "none"
        top = worktrees.top_of(root, run_id, step)
        target = git.snapshot(top).tree if top.exists() else found.branch
        parts.append(
            f"\n# join {step}: merged {steps} into {found.branch} (merge {found.commit}); "
            f"conflicts: {conflicts}\n" + git.diff(root, found.base, target, stat=stat)
        )
    return "".join(parts)
