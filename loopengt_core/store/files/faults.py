"""Fault injection for the crash tests: `LOOPENGT_FAULT=POINT[:N]` kills the process (or fails a write as
on a full disk) the Nth time the file store passes a named point.

The points themselves stay in the store's code paths (`FileStore.append`, `create_run`, `save_snapshot`,
`save_checkpoint` and the group commit); this module only parses the setting and decides when to fire.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from loopengt_core.model.errors import InvalidArgument

FAULT_ENV = "LOOPENGT_FAULT"
FAULT_POINTS = frozenset(
    {
        "append.before_write",
        "append.mid_write",
        "append.after_write",
        "append.after_fsync",
        "group.before_sync",
        "snapshot.after_temp",
        "snapshot.after_rename",
        "create.before_rename",
    }
)

# Points where a write fails with ENOSPC (a full disk) instead of the process dying.
FAIL_POINTS = frozenset({"append.enospc", "checkpoint.enospc"})


class Faults:
    """The fault setting of one store: `point` is None when no fault is armed (the usual case)."""

    def __init__(self, value: str | None) -> None:
        """Parse a LOOPENGT_FAULT value; InvalidArgument names the allowed points when it is wrong."""
        self.point: str | None = None
        self.nth = 1
        self.hits = 0
        if not value:
            return
        point, _, nth = value.partition(":")
        if point not in FAULT_POINTS | FAIL_POINTS or (nth and not (nth.isdigit() and int(nth) >= 1)):
            raise InvalidArgument(
                f"{FAULT_ENV}={value!r}: use POINT or POINT:N with N >= 1, POINT one of "
                + ", ".join(sorted(FAULT_POINTS | FAIL_POINTS))
            )
        self.point = point
        self.nth = int(nth) if nth else 1

    def hit(self, point: str) -> bool:
        """Count a pass through `point`; True when this pass is the one to crash at."""
        if point != self.point:
            return False
        self.hits += 1
        return self.hits == self.nth

    @staticmethod
    def die() -> None:
        """Kill this process at once, as a crash or power loss would stop it."""
        os.kill(os.getpid(), signal.SIGKILL)

    def fault(self, point: str) -> None:
        """Die if this pass through `point` is the armed one."""
        if self.hit(point):
            self.die()

    def fail(self, point: str, path: Path | str) -> None:
        """At a FAIL_POINTS point: the write fails as on a full disk, and the process lives on."""
        if self.point is not None and self.hit(point):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
