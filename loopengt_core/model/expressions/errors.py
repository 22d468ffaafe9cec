"""The two ways a condition goes wrong: invalid in both dialects, or failing on this run's data."""

from __future__ import annotations


class ExpressionError(ValueError):
    """A condition that cannot be evaluated in either dialect (a validation error)."""


class ConditionFailed(Exception):
    """Evaluating a valid condition failed on this data (a missing key, a wrong type, a limit)."""
