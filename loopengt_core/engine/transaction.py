"""One transition of the engine (`Transaction`: the events decided so far, each applied to the state as
it is emitted), the retry backoff of command steps, and the limits on commands the engine sets.
"""

from __future__ import annotations

import random
import typing
from datetime import datetime
from typing import Literal

from loopengt_core.model.events import (
    AnyEvent,
    iso,
)
from loopengt_core.model.spec import RetryPolicy
from loopengt_core.model.state import RunState, apply

DEFAULT_COMMAND_TIMEOUT_SECONDS = 600.0
COMMAND_OUTPUT_CHARS = 16_000
Outcome = Literal["success", "failure"]
OUTCOMES: tuple[Outcome, ...] = typing.get_args(Outcome)


def backoff_delay(retry: RetryPolicy, failed_attempt: int, *, seed: int, step: str) -> float:
    """Seconds before re-running a command step after its `failed_attempt`-th attempt failed."""
    base = retry.backoff_seconds if retry.backoff_seconds is not None else retry.initial_delay_seconds
    factor = retry.backoff_multiplier or 2.0
    n = max(failed_attempt, 1)
    delay = {"none": 0.0, "fixed": base, "linear": base * n, "exponential": base * factor ** (n - 1)}[
        retry.backoff
    ]
    delay = min(delay, retry.max_delay_seconds)
    if retry.jitter and delay > 0:
        delay *= random.Random(f"{seed}:{step}:{n}").uniform(0.5, 1.0)
    return round(delay, 3)


class Transaction:
    """One transition: the events decided so far, each already applied to `state`."""

    def __init__(self, state: RunState | None, now: datetime) -> None:
        self._state = state
        self.now = now
        self.at = iso(now)
        self.events: list[AnyEvent] = []
        self.seq = (state.seq if state is not None else 0) + 1  # the next event's

    @property
    def state(self) -> RunState:
        """The state so far (run_started must come first)."""
        assert self._state is not None, "run_started must come first"
        return self._state

    def emit(self, event: AnyEvent) -> None:
        """Apply one event to the state and keep it: later decisions see it."""
        self._state = apply(self._state, event)
        self.events.append(event)
        self.seq = event.seq + 1
