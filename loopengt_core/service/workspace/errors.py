"""What goes wrong recording a run's files, as errors whose message names the fix.

Every message ends with OR_NONE where turning recording off is a way out.
"""

from __future__ import annotations

from loopengt_core.model.errors import LoopengtError

# how every message below ends when turning recording off is a way out: true for a new run only (a
# running run keeps its spec), so the service leaves it out of what it says about a running one
OR_NONE = ", or set `workspace: none` in the spec"


class WorkspaceError(LoopengtError):
    """git could not record or restore a run's files; the message says what to do."""

    code = "workspace"


class GitMissing(WorkspaceError):
    """The run needs git and the `git` program is not on PATH."""

    code = "git_missing"


class NotAGitRepository(WorkspaceError):
    """The run's folder is not in a git repository, and the spec asks for one."""

    code = "not_a_git_repository"


class WorkspaceDrift(WorkspaceError):
    """Files changed outside the loop since its last recorded step."""

    code = "workspace_drift"

    def __init__(self, message: str, *, changed: list[str], run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.changed = changed
