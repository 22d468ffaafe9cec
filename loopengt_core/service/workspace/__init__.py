"""The code's state beside the loop's state: git snapshots of a run's work tree (I/O; the service uses it).

A snapshot is the id of a git tree holding every tracked and untracked-but-not-ignored file as it is
on disk. It is computed on a private index (`GIT_INDEX_FILE`), so the user's index, branch and stash
are never touched. The private index is seeded from a copy of the user's and kept between snapshots
(`<git dir>/loopengt/index-<exclusions>-<signature>`): its stat cache and cache tree make the next
snapshot hash only the files changed since the last one. It is seeded anew whenever the user's index
or info/exclude changes, when a .gitignore in the work tree changes (what it now ignores must leave
the index), and when it names objects `git gc` has pruned since, so "tracked" and "ignored" keep
meaning what the user says. Each snapshot works on its own copy and renames it into place, so
concurrent snapshots never contend for git's index lock. Blobs land in the object store as loose
objects (that is how git builds a tree); checkpoints keep theirs alive with a commit under
`refs/loopengt/<run>/<checkpoint>`.

Never calls the network, never prompts, never starts a pager. The engine never imports this module:
the service passes the results in as values, so replaying a run never runs git.
"""

from loopengt_core.service.workspace.errors import (
    OR_NONE,
    GitMissing,
    NotAGitRepository,
    WorkspaceDrift,
    WorkspaceError,
)
from loopengt_core.service.workspace.gitrun import GIT_TIMEOUT_SECONDS
from loopengt_core.service.workspace.probe import is_work_tree, prefix, probe
from loopengt_core.service.workspace.seed import STALE_SCRATCH_SECONDS
from loopengt_core.service.workspace.snapshot import WorkspaceState, snapshot
from loopengt_core.service.workspace.trees import add_worktree, changed_paths, diff, keep, remove_worktree

__all__ = [
    "GIT_TIMEOUT_SECONDS",
    "OR_NONE",
    "STALE_SCRATCH_SECONDS",
    "GitMissing",
    "NotAGitRepository",
    "WorkspaceDrift",
    "WorkspaceError",
    "WorkspaceState",
    "add_worktree",
    "changed_paths",
    "diff",
    "is_work_tree",
    "keep",
    "prefix",
    "probe",
    "remove_worktree",
    "snapshot",
]
