"""The errors every store backend raises, kept with the protocol so that no backend imports another.

`StoreConflict`, `StoreCorrupt`, `NotFound` and `InvalidArgument` are the service's own errors
(`loopengt_core.model.errors`), re-exported here because a store raises them too; the two defined here only
stores raise. No OSError or driver error leaves a backend: each becomes one of these.
"""

from __future__ import annotations

from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound, StoreConflict, StoreCorrupt

__all__ = ["InvalidArgument", "LockBusy", "NotFound", "StoreConflict", "StoreCorrupt", "StoreIOError"]


class StoreIOError(LoopengtError):
    """The storage refused an operation (permissions, a full disk, an I/O error, an unreachable database).

    The message names the path or the server (never a password) and the run when there is one.
    """

    code = "store_io_error"


class LockBusy(Exception):
    """A run's lock is held elsewhere and the caller asked not to wait (`LocalLocking.try_lock`).

    Not a LoopengtError: it is a signal to the caller (try again on a worker thread), never an answer to a
    client.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} is locked by another writer (lock() waits for it)")
        self.run_id = run_id
