"""Errors a caller can act on. Each carries a stable `code` and, where one applies, the run id.

The MCP layer turns a `LoopengtError` into a tool error and the CLI into one line on stderr; any other
exception is a bug and is logged, never shown raw to a client.
"""

from __future__ import annotations


class LoopengtError(Exception):
    """Base: `str(err)` is the whole message, written to say what was wrong and what to do."""

    code = "error"

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id


class InvalidArgument(LoopengtError):
    """A request's argument is not allowed; the message names it and what is allowed."""

    code = "invalid_argument"


class NotFound(LoopengtError):
    """The run, task or checkpoint named does not exist."""

    code = "not_found"


class Conflict(LoopengtError):
    """The request contradicts what is stored (another spec for a run id, another output for a task)."""

    code = "conflict"


class TooLarge(LoopengtError):
    """An input is over a size limit; the message gives the limit and the variable that sets it."""

    code = "too_large"


class StoreConflict(LoopengtError):
    """A writer lost a race: the run's log moved on since it was read. Reload and decide again."""

    code = "store_conflict"


class StoreCorrupt(LoopengtError):
    """Stored data fails its checksum or sequence somewhere other than a torn last line."""

    code = "store_corrupt"
