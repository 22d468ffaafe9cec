"""The events of a run's files: changes accepted, isolated worktrees added, branches merged at a
join (or the join deferred)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from loopengt_core.model.events._base import TYPE_DOC, Event


class WorkspaceAccepted(Event):
    """Files changed outside the loop were accepted as the run's state (resume with accept_drift)."""

    type: Literal["workspace_accepted"] = Field("workspace_accepted", description=TYPE_DOC)
    head: str | None = Field(None, description="HEAD when accepted.")
    tree: str = Field(description="The accepted tree.")
    changed: list[str] = Field(default_factory=list, description="The files changed outside the loop.")


class WorktreeAdded(Event):
    """An isolated step (`isolation: worktree`) got its own git worktree, before its task was handed out.

    Recorded after git made it: a crash in between leaves a worktree no event names, which the next
    transition replaces (nothing was handed out in it) and `loopengt prune` removes.
    """

    type: Literal["worktree_added"] = Field("worktree_added", description=TYPE_DOC)
    step: str = Field(description="The step that works there (every attempt of it).")
    path: str = Field(description="The worktree's directory (absolute), the task's `workdir`.")
    branch: str = Field(description="Its branch, `loopengt/<run>/<step>`.")
    base: str = Field(
        description="The commit it was made from: the run's recorded files (tree, on the recorded HEAD) when "
        "the step started, never the user's HEAD of the moment."
    )


class MergedBranch(TypedDict):
    """One branch merged at a join, in spec order."""

    step: Annotated[str, Field(description="The isolated step whose work it holds.")]
    branch: Annotated[str, Field(description="Its branch.")]
    commit: Annotated[str, Field(description="The commit of its worktree's files that was merged.")]


class MergeConflict(TypedDict):
    """A file two merged branches both changed in the same place."""

    path: Annotated[str, Field(description="The file, from the top of the work tree.")]
    hunks: Annotated[
        list[str],
        Field(description="Each conflicted region as the merged file holds it, from <<<<<<< to >>>>>>>."),
    ]


class BranchesMerged(Event):
    """A join step's isolated dependencies were merged, in spec order, into the run's line of work: a
    worktree of the run on its own branch (never the user's checkout). The join's tasks work and its
    command gates run there; conflicts stay in the files, with markers, and go to the join's task."""

    type: Literal["branches_merged"] = Field("branches_merged", description=TYPE_DOC)
    step: str = Field(description="The join step.")
    path: str = Field(description="The line's worktree (absolute): the join task's `workdir`.")
    branch: str = Field(
        description="The line's branch, `loopengt/<run>/<join step>`; kept when the run ends."
    )
    base: str = Field(description="The commit the merges started from (the first branch's base).")
    merged: list[MergedBranch] = Field(description="The branches merged, in spec order.")
    commit: str = Field(description="The last merge commit: the line's files before the join task works.")
    conflicts: list[MergeConflict] = Field(
        default_factory=list, description="Files left with conflict markers, for the join's task to resolve."
    )


class JoinDeferred(Event):
    """A join's merge had conflicts and the join names a `resolve` step: the join's task (issued with the
    merge, not yet worked on) is withdrawn and the resolve step's task gets the conflicts, in the join's
    worktree. When the resolve step completes, the join's task is issued again on the resolved files."""

    type: Literal["join_deferred"] = Field("join_deferred", description=TYPE_DOC)
    step: str = Field(description="The join step.")
    task_id: str = Field(description="The join's task withdrawn (never handed to an agent's work).")
    resolve: str = Field(description="The step that resolves the conflicts (the join's `resolve`).")
