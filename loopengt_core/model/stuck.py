"""Stuck-loop detection: attempts of a step that repeat instead of converging.

A step is stuck when its last N failed attempts in a row failed the same way (the feedback equal once
paths, times, ids and hex are masked), submitted the same output, or, in a git-aware run, left the work
tree as it was. The engine then pauses the run for a person instead of spending retries. The attempts
are folded from the log (`StepState.streak`), so a restart decides the same.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b"), "<time>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (
        re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,}\b"),
        "<hex>",
    ),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*/)+[\w.-]+"), "<path>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|s|sec|seconds)\b"), "<duration>"),
    (re.compile(r"\bpid[ =:]\d+\b|\b\d{9,}\b"), "<id>"),
)


def normalise(feedback: str | None) -> str:
    """The failure with what changes between identical failures masked (paths, times, ids, hex)."""
    text = feedback or ""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return " ".join(text.split())


class StuckPolicy(BaseModel):
    """`policy.stuck`: pause for a person after `after` attempts in a row that repeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: int = Field(3, ge=2, le=100, description="Attempts in a row that repeat before the run pauses.")
    same_failure: bool = Field(True, description="The same normalised failure (gate feedback) each time.")
    same_output: bool = Field(True, description="The same submitted output each time.")
    no_change: bool = Field(True, description="Git-aware runs: the work tree unchanged by each attempt.")


class Compared(BaseModel):
    """What stuck detection compares of a failed attempt; recorded with its retry when policy.stuck is on."""

    model_config = ConfigDict(frozen=True)

    failure: str = Field(description="The failure's feedback, normalised (paths, times, ids, hex masked).")
    digest: str | None = Field(None, description="The digest of the output the attempt submitted.")
    tree: str | None = Field(None, description="Git-aware runs: the work tree after the attempt.")


class Attempt(Compared):
    """A failed attempt of a step in the state's streak."""

    attempt: int = Field(description="The attempt that failed.")
    at: str = Field(description="When it failed.")
    feedback: str | None = Field(None, description="The failure as the gate said it.")


def diagnose(step: str, streak: list[Attempt], policy: StuckPolicy) -> str | None:
    """What repeated over the last `policy.after` failed attempts, since when, and the last feedback."""
    last = streak[-policy.after :]
    if len(last) < policy.after:
        return None
    what = None
    if policy.same_failure and len({a.failure for a in last}) == 1:
        what = "failed with the same failure"
    elif policy.same_output and last[0].digest is not None and len({a.digest for a in last}) == 1:
        what = "submitted the same output"
    elif policy.no_change and last[0].tree is not None and len({a.tree for a in last}) == 1:
        what = "left the work tree unchanged"
    if what is None:
        return None
    feedback = (last[-1].feedback or "").strip()
    shown = feedback if len(feedback) <= 500 else feedback[:500] + " ..."
    return (
        f"stuck: step '{step}': {policy.after} attempts in a row {what} (since attempt {last[0].attempt} "
        f"at {last[0].at}); last feedback: {shown or '(none)'}"
    )
