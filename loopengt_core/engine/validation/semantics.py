"""Checking what relates one part of a valid-looking spec to another (`check_semantics`), and the
one-line summary of a valid spec."""

from __future__ import annotations

from loopengt_core.engine.validation.content_checks import (
    gate_problems,
    pattern_problems,
    placeholder_problems,
    schema_problems,
    stop_problems,
)
from loopengt_core.engine.validation.graph_checks import (
    budget_problems,
    cycle_problems,
    duplicate_problems,
    isolation_problems,
    reference_problems,
    resolve_problems,
)
from loopengt_core.engine.validation.problems import Problem
from loopengt_core.model.spec import LoopSpec


def check_semantics(spec: LoopSpec) -> list[Problem]:
    """Every problem that relates one part of a valid-looking spec to another."""
    return [
        *duplicate_problems(spec),
        *reference_problems(spec),
        *cycle_problems(spec),
        *gate_problems(spec),
        *schema_problems(spec),
        *placeholder_problems(spec),
        *stop_problems(spec),
        *pattern_problems(spec),
        *budget_problems(spec),
        *isolation_problems(spec),
        *resolve_problems(spec),
    ]


def summary(spec: LoopSpec) -> str:
    """One line for a valid spec: its name, pattern and how many steps, agents and gates it has."""
    counts = (
        (len(spec.steps), "step"),
        (len(spec.agents), "agent"),
        (len(spec.policy.verification_gates), "gate"),
    )
    return (
        f"valid: loop '{spec.name}' ({spec.pattern}, "
        + ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)
        + ")"
    )
