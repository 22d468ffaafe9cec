"""What validation reports (`Problem`, `SpecError`) and the wording every check shares: a close
match to suggest, a value shortened for a message, a value's kind, a list of the names that exist."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from loopengt_core.model.errors import LoopengtError


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class SpecError(LoopengtError):
    """A spec that cannot be used; `problems` lists every mistake found."""

    code = "invalid_spec"

    def __init__(self, problems: list[Problem], *, source: str = "spec") -> None:
        self.problems = problems
        lines = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{source} is not a valid loop spec: {lines}{more}")


def suggest(word: str, allowed: list[str]) -> str:
    """'did you mean ...?' for the allowed word closest to `word`, or nothing."""
    close = difflib.get_close_matches(word, allowed, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def short(value: Any) -> str:
    """A value's repr, shortened to fit in a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: Any) -> str:
    """What kind of value this is, in the words a spec's author uses (a mapping, a list, text ...)."""
    names = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def names_text(kind: str, names: list[str]) -> str:
    """The names of this kind that exist, for a message (or that none are defined)."""
    unique = list(dict.fromkeys(names))
    return f"{kind}: {', '.join(unique)}" if unique else f"no {kind} defined"
