"""What every part of the loop spec shares: the base model that refuses unknown keys, the enumerations
of allowed values, and the reading of a command as an argv list."""

from __future__ import annotations

import shlex
import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
)

Pattern = Literal[
    "sequential", "parallel_fan_out", "handoff", "supervisor_worker", "evaluator_optimizer", "custom"
]
PATTERNS: tuple[str, ...] = typing.get_args(Pattern)
Backoff = Literal["none", "fixed", "linear", "exponential"]
OnFailure = Literal["retry", "abort"]
StopConditionType = Literal["max_turns", "goal_met", "quality_threshold", "timeout", "manual", "custom"]
ToolType = Literal["builtin", "mcp", "function", "api", "http", "shell", "custom"]
TriggerType = Literal["manual", "schedule", "event", "webhook", "api"]
WorkspaceMode = Literal["auto", "git", "none"]
Isolation = Literal["worktree", "none"]
WorktreesOnEnd = Literal["delete", "keep"]

JsonSchema = dict[str, Any]


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def argv_of(value: Any) -> Any:
    """Accept `"pytest -q"` as well as `["pytest", "-q"]`; both become an argv list (never a shell)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command {value!r}: {exc}") from exc
    return value
