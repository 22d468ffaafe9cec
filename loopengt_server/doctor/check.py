"""One line of `loopengt doctor`: a check's level, what it looked at, and the fix when it did not pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    level: Level
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The check as one aligned line, with the fix when it did not pass."""
        fix = f" -> fix: {self.fix}" if self.fix and self.level != "OK" else ""
        return f"{self.level:<5} {self.name:<22} {self.detail}{fix}"
