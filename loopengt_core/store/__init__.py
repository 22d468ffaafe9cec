"""Where runs live. `Store` is the protocol; `files/` (the default) and `postgres/` implement it.

This module imports no backend, so the engine and the service depend only on the protocol.
Stores see events and JSON-able state; they never interpret them. Every backend raises only the errors
of `loopengt_core.store.errors` (StoreConflict, StoreCorrupt, StoreIOError, NotFound, InvalidArgument,
and LockBusy from `try_lock`): no OSError or driver error reaches the service.

What only some backends can do is a capability, a small protocol of its own that a caller checks with
`isinstance` (never `getattr`):

    LocalLocking     try_lock: the lock is local to this machine, so trying it never waits (file store)
    DirectoryBacked  root: the runs live in a directory here, which a workspace snapshot leaves out (file store)
    Sweepable        sweep_leftovers: temp files of crashed writers can be removed (file store)
    Repairable       repair: a damaged log can be cut after its last good batch (file store)
    ChangeFeed       changes: runs changed by any instance are pushed, not polled (PostgreSQL)
    AppendAt         append_at: a transition on a state at the log's end appends in one step (PostgreSQL)

`tests/test_store_contract.py` runs every backend through the protocol and each capability it has.

The protocol is synchronous on purpose: a transition is a short critical section under an OS-level
lock, and the MCP layer runs it on a worker thread, so waiting for a lock or an fsync never blocks
the event loop, while the CLI calls the same code directly.
"""

from loopengt_core.store.errors import LockBusy, StoreIOError
from loopengt_core.store.location import (
    describe_location,
    is_database,
    is_directory,
    open_store,
    probe_database,
)
from loopengt_core.store.protocol import (
    AppendAt,
    ChangeFeed,
    DirectoryBacked,
    GroupCommit,
    LocalLocking,
    Repairable,
    Store,
    Sweepable,
)
from loopengt_core.store.values import (
    ID_PATTERN,
    Checkpoint,
    DatabaseProbe,
    LoadedRun,
    Repair,
    check_batch,
    check_checkpoint,
    check_id,
)

__all__ = [
    "ID_PATTERN",
    "AppendAt",
    "ChangeFeed",
    "Checkpoint",
    "DatabaseProbe",
    "DirectoryBacked",
    "GroupCommit",
    "LoadedRun",
    "LocalLocking",
    "LockBusy",
    "Repair",
    "Repairable",
    "Store",
    "StoreIOError",
    "Sweepable",
    "check_batch",
    "check_checkpoint",
    "check_id",
    "describe_location",
    "is_database",
    "is_directory",
    "open_store",
    "probe_database",
]
