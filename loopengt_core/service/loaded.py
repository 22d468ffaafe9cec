"""A run as the service holds it in memory between transitions, and the shape of a decision.

Shared by the transition kernel (`loopengt_core.service.kernel`), the command runner and the collaborators
that act on a loaded run (`loopengt_core.service.worktree_steps`), so none imports another for its types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loopengt_core.engine import Engine
from loopengt_core.model.events import AnyEvent
from loopengt_core.model.state import RunState


@dataclass
class LoadedRun:
    """A run's state up to some seq of its log, the engine of its spec, and the spec's text."""

    state: RunState
    engine: Engine
    spec_text: str


Decide = Callable[[Engine, RunState, datetime], list[AnyEvent]]


def nothing(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
    """A decision that appends nothing (a read under the lock: deadlines still apply)."""
    return []


def no_answer(run: LoadedRun) -> None:
    """An answer of nothing, for a transition whose caller needs no view."""
    return None
