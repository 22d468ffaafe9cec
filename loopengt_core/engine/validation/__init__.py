"""Loading and validating a loop spec, reporting every problem at once with its location.

Parsing and loading live in `loopengt_core.engine.validation.parsing`, the structural checks (pydantic, with
the offending parts set aside so the rest is checked too) in `loopengt_core.engine.validation.structure`, and
the checks that relate one part of a spec to another in `loopengt_core.engine.validation.semantics`.
"""

from loopengt_core.engine.validation.parsing import (
    SPEC_KEYS,
    load_spec,
    parse_file_text,
    parse_text,
    spec_data,
)
from loopengt_core.engine.validation.problems import Problem, SpecError
from loopengt_core.engine.validation.report import Validation, validation_of
from loopengt_core.engine.validation.semantics import check_semantics, summary
from loopengt_core.engine.validation.structure import location, validate_data

__all__ = [
    "SPEC_KEYS",
    "Problem",
    "SpecError",
    "Validation",
    "check_semantics",
    "load_spec",
    "location",
    "parse_file_text",
    "parse_text",
    "spec_data",
    "summary",
    "validate_data",
    "validation_of",
]
