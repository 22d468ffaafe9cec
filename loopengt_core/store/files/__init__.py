"""The default store: one directory per run under `<root>/runs/`, an append-only checksummed event log.

`FileStore` (`store.py`) is the backend; the modules beside it are its collaborators, one job each:
`records.py` (the sealed record format), `fsio.py` (durable writes), `logreader.py` (scanning a log),
`runcache.py` (what a process remembers about logs), `runfiles.py` (opening a run's files safely),
`locking.py` (the run lock), `deferred.py` (group commit), `snapshots.py`, `taskindex.py`,
`checkpoints.py`, `repair.py`, `listing.py` and `faults.py` (the crash suite's kill points).
Importers use this package: `from loopengt_core.store.files import FileStore`.
"""

from loopengt_core.store import Repair, StoreIOError
from loopengt_core.store.files.faults import FAIL_POINTS, FAULT_ENV, FAULT_POINTS
from loopengt_core.store.files.logreader import LogCorrupt
from loopengt_core.store.files.store import FileStore

# Repair and StoreIOError live with the protocol (loopengt_core.store); re-exported for older imports.
__all__ = ["FAIL_POINTS", "FAULT_ENV", "FAULT_POINTS", "FileStore", "LogCorrupt", "Repair", "StoreIOError"]
