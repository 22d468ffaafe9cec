"""`loopengt design`: what is left once the `design` loop completed, writing the spec it designed.

The loop itself (draft, validation gate, dry-run gate) is the built-in template `design`; over MCP it
is `start_run(template="design", inputs={"goal": ...})` and the agent saves the spec itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loopengt_core.engine.validation import SpecError, load_spec, summary
from loopengt_core.model.errors import LoopengtError

DESIGN_TEMPLATE = "design"


class DesignNotWritten(LoopengtError):
    """The design run's final output holds no usable spec, or the file cannot be written."""

    code = "design_not_written"


def spec_text(final_output: Any) -> str:
    """The designed spec as YAML text (the agent may have submitted it as text or as an object)."""
    spec = final_output.get("spec") if isinstance(final_output, dict) else None
    if isinstance(spec, dict):
        return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    if isinstance(spec, str) and spec.strip():
        return spec if spec.endswith("\n") else spec + "\n"
    raise DesignNotWritten("the design run's final output has no spec (expected output.spec)")


def design_output(final_output: Any, path: Path) -> str:
    """Write the designed spec to `path` and return its summary (`valid: loop ...`).

    It is validated again before it is written: the gates passed it, and a file that does not load is
    never left where the user asked for a loop.yaml.
    """
    text = spec_text(final_output)
    try:
        loaded = load_spec(text, source="the designed spec")
    except SpecError as exc:
        raise DesignNotWritten(exc.message) from None
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DesignNotWritten(f"cannot write {path}: {exc.strerror or exc}") from None
    return summary(loaded)
