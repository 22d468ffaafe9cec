"""The table of appliers by event class: each applier module registers its functions here with `on`,
and `loopengt_core.model.state.apply` looks them up (a dict lookup by class: `apply` runs for every event)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from loopengt_core.model.events import (
    Event,
)
from loopengt_core.model.state.run import RunState

E = TypeVar("E", bound=Event)
APPLIERS: dict[type[Event], Callable[[RunState, Any], None]] = {}


def on(kind: type[E]) -> Callable[[Callable[[RunState, E], None]], Callable[[RunState, E], None]]:
    """Register the applier of one event class (a dict lookup by class: `apply` runs for every event)."""

    def register(fn: Callable[[RunState, E], None]) -> Callable[[RunState, E], None]:
        APPLIERS[kind] = fn
        return fn

    return register
