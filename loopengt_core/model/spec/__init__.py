"""The loop spec: pydantic models for every loopengt 0.1.0 field plus the additive extensions.

The models check structure only (types, enums, unknown keys). Everything that relates one part of a
spec to another (references, cycles, expressions, placeholders, pattern rules) lives in
`loopengt_core.engine.validation`, so that one run reports every problem at once. The models live in
`loopengt_core.model.spec.base`, `.gates`, `.steps`, `.agents`, `.policy` and `.loop`; this package exports
what the rest of loopengt uses.
"""

from loopengt_core.model.spec.agents import Agent, Tool, Trigger
from loopengt_core.model.spec.base import PATTERNS, JsonSchema, OnFailure, Pattern, SpecModel
from loopengt_core.model.spec.gates import (
    APPROVAL_CHANNELS,
    ApprovalChannel,
    ApprovalRule,
    Gate,
    JudgeRule,
    RetryPolicy,
    SpecCheck,
)
from loopengt_core.model.spec.loop import CONTEXT_FROM_MAX, LoopSpec, json_schema
from loopengt_core.model.spec.policy import InputDecl, OutputSpec, Policy, StopCondition
from loopengt_core.model.spec.steps import Dependency, Routes, Step

__all__ = [
    "APPROVAL_CHANNELS",
    "CONTEXT_FROM_MAX",
    "PATTERNS",
    "Agent",
    "ApprovalChannel",
    "ApprovalRule",
    "Dependency",
    "Gate",
    "InputDecl",
    "JsonSchema",
    "JudgeRule",
    "LoopSpec",
    "OnFailure",
    "OutputSpec",
    "Pattern",
    "Policy",
    "RetryPolicy",
    "Routes",
    "SpecCheck",
    "SpecModel",
    "Step",
    "StopCondition",
    "Tool",
    "Trigger",
    "json_schema",
]
