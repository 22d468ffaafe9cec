"""A spec checked without starting it: every problem, or the summary of a valid spec. The one answer the
`validate_spec` tool, `loopengt validate` and `loopengt.validate` give, so all three agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopengt_core.engine.validation.parsing import parse_file_text, spec_data
from loopengt_core.engine.validation.problems import Problem, SpecError
from loopengt_core.engine.validation.semantics import summary
from loopengt_core.engine.validation.structure import validate_data


@dataclass(frozen=True)
class Validation:
    """The result of checking a spec: every problem with its location (`steps[1].agent: unknown agent ...`)."""

    valid: bool
    problems: list[Problem] = field(default_factory=list)
    summary: str | None = None
    parsed: bool = True  # False: the text is not YAML/JSON within the limits (its problems say where)


def validation_of(spec: Any, *, file_source: str | None = None) -> Validation:
    """Check a spec given as YAML/JSON text or data; never raises for a bad spec.

    `file_source`: the text was read from this file for a client that may not read the file itself, so no
    message quotes a word of it (it may be any file in the project: see `parse_file_text`).
    """
    quote = file_source is None
    try:
        data = spec_data(spec) if quote else parse_file_text(spec, str(file_source))
    except SpecError as exc:
        return Validation(valid=False, problems=exc.problems, parsed=False)
    loaded, problems = validate_data(data, quote=quote)
    if loaded is None or problems:
        return Validation(valid=False, problems=problems)
    return Validation(valid=True, summary=summary(loaded))
