"""The workspace binding of runs: the files a run records, read from git, and how they drifted.

A run with a workspace records its files' git tree at each step; this reads them (leaving out the file
store's directory and the forks' worktrees, which are not the run's code), decides what a new run starts
from, compares the work tree with the last recorded files, and makes a fork's worktree. It takes no lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from loopengt_core.engine.view import RunView, with_drift
from loopengt_core.model.events import Event, RunForked, RunStarted
from loopengt_core.model.spec import LoopSpec
from loopengt_core.model.state import RunState
from loopengt_core.service import workspace as git
from loopengt_core.service.paths import WORKTREES_DIR
from loopengt_core.service.workspace import WorkspaceError, WorkspaceState
from loopengt_core.store import DirectoryBacked, Store

V = TypeVar("V", bound=RunView)


def start_tree(first: Event) -> str | None:
    """The tree a run started from: its run_started's, or the parent's state a fork began with."""
    if isinstance(first, RunStarted | RunForked) and first.workspace is not None:
        return first.workspace.tree
    if isinstance(first, RunForked):
        inherited = RunState.model_validate(first.state).workspace
        return inherited.tree if inherited is not None else None
    return None


def restated(exc: WorkspaceError, message: str, run_id: str | None = None) -> WorkspaceError:
    """`exc` (its kind, so its code) with another message."""
    kind = (
        type(exc) if type(exc) in (WorkspaceError, git.GitMissing, git.NotAGitRepository) else WorkspaceError
    )
    return kind(message, run_id=run_id)


def unrecorded(exc: WorkspaceError, run_id: str, then: str) -> WorkspaceError:
    """A running run's files could not be recorded: the reason and fix, what was not done, the ways on.

    `workspace: none` is no way out for a running run (it keeps its spec), so it is not offered.
    """
    reason = exc.message.replace(git.OR_NONE, "")
    return restated(
        exc,
        f"run '{run_id}' cannot record its files: {reason}. {then}; or end the run with cancel_run "
        f"(`loopengt cancel {run_id}`)",
        run_id,
    )


class WorkspaceBinding:
    """The git side of the runs of one store, started in `cwd` (the project root)."""

    def __init__(self, store: Store, cwd: Path) -> None:
        """`store`: a directory-backed one's folder is left out of every snapshot."""
        self.store = store
        self.cwd = cwd

    def snapshot(self, root: str | Path) -> WorkspaceState:
        """The files under `root` as git sees them now (the store's folder and forks' worktrees left out)."""
        # the file store's directory and the forks' worktrees, when they lie in the work tree, are not
        # the run's code
        forks = self.cwd.resolve() / WORKTREES_DIR
        if isinstance(self.store, DirectoryBacked):
            return git.snapshot(root, exclude=(self.store.root.resolve(), forks))
        return git.snapshot(root, exclude=(forks,))

    def start(self, spec: LoopSpec) -> WorkspaceState | None:
        """The files a new run starts from, or None when it records none (`workspace` of the spec).

        Raises (before any run exists) when they should be recorded but cannot be: a run must not
        start that its first step could not move on.
        """
        if spec.workspace == "none":
            return None
        try:
            inside, why = git.is_work_tree(self.cwd)
            if inside:
                return self.snapshot(self.cwd)
        except git.GitMissing:
            if spec.workspace == "git":
                raise
            return None
        except WorkspaceError as exc:
            raise restated(exc, f"No run was started: its files cannot be recorded: {exc.message}") from None
        if spec.workspace == "git":
            raise git.NotAGitRepository(
                f"workspace: git needs a git work tree, but {self.cwd} is not inside one ({why}); run "
                "`git init` there (or start the server in the repository), or set workspace: auto or none"
            )
        return None

    def drift(self, view: V, current: WorkspaceState | WorkspaceError | None = None) -> V:
        """Compare the work tree now with the run's last recorded files (only while the run is active).

        `current`: the work tree as just recorded, or why it could not be (else it is recorded here).
        """
        recorded = view.workspace
        if recorded is None or view.status in ("completed", "failed", "cancelled"):
            return view
        if isinstance(
            current, WorkspaceError
        ):  # a running run keeps its spec: `workspace: none` is no way out
            return with_drift(view, error=current.message.replace(git.OR_NONE, ""))
        try:
            if current is None or current.root != recorded.root:
                current = self.snapshot(recorded.root)
            return with_drift(view, git.changed_paths(recorded.root, recorded.tree, current.tree))
        except WorkspaceError as exc:  # a running run keeps its spec: `workspace: none` is no way out
            return with_drift(view, error=exc.message.replace(git.OR_NONE, ""))

    def add_worktree(
        self, run_id: str, checkpoint_id: str, at_checkpoint: RunState, path: Path
    ) -> WorkspaceState:
        """A git worktree at the checkpoint's commit; the fork's work tree (same subdirectory as the run's)."""
        recorded = at_checkpoint.workspace
        if recorded is None or recorded.commit is None:
            raise WorkspaceError(
                f"checkpoint '{checkpoint_id}' of run '{run_id}' keeps no files (the run records none: "
                "workspace: none, or not started in a git work tree); fork without worktree",
                run_id=run_id,
            )
        subdir = git.prefix(recorded.root)
        git.add_worktree(recorded.root, path, recorded.commit)
        try:
            return self.snapshot(path / subdir if subdir else path)
        except BaseException:
            git.remove_worktree(recorded.root, path)
            raise
