"""The spec's run-wide settings: the policy (gates, budget, workspace, stuck detection), stop conditions,
declared outputs and inputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from loopengt_core.model.budget import Budget
from loopengt_core.model.spec.base import JsonSchema, SpecModel, StopConditionType
from loopengt_core.model.spec.gates import Gate, RetryPolicy
from loopengt_core.model.stuck import StuckPolicy


class Policy(SpecModel):
    """Run-wide rules: turns, time, retries, shared gates, concurrency, budget and stuck detection."""

    max_turns: int = Field(50, ge=1, description="Accepted submissions allowed in a run.")
    max_total_time_seconds: float | None = Field(
        None,
        gt=0,
        description="A run fails once it has lasted this long (wall-clock time from its start).",
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="How failed attempts are retried: how many times and with what delay (an agent's `retry` "
        "overrides it).",
    )
    verification_gates: list[Gate] = Field(
        default_factory=list,
        description="Gates steps can share: a step lists their names in `verification_gates`.",
    )
    allow_parallel: bool = Field(
        False,
        description="parallel_fan_out: set to false to run the ready steps one at a time; left out, up to "
        "max_concurrency run at once.",
    )
    max_concurrency: int = Field(4, ge=1, description="parallel_fan_out: how many steps may be open at once.")
    fail_fast: bool = Field(
        True,
        description="When a step fails for good: true fails the run at once; false lets the other open "
        "branches finish first, then fails it.",
    )
    budget: Budget | None = Field(
        None, description="Token, cost and time limits: audit records and warns, enforce pauses the run."
    )
    stuck: StuckPolicy | Literal[False] = Field(
        default_factory=StuckPolicy,
        description="Pause for a person when attempts repeat (same failure, same output, no file change) "
        "while retries remain; on by default (3 attempts in a row, every check). `stuck: false` turns it "
        "off; an object changes the defaults.",
    )

    @field_validator("stuck", mode="before")
    @classmethod
    def _stuck_on_or_false(cls, value: Any) -> Any:
        if value is False or isinstance(value, dict | StuckPolicy):
            return value
        raise ValueError("must be false (off) or an object such as {after: 3}; leave it out for the defaults")

    def stuck_policy(self) -> StuckPolicy | None:
        """The stuck policy in force; None when `stuck: false` turned it off."""
        return self.stuck or None


class StopCondition(SpecModel):
    """A reason to end the run. goal_met and custom: an expression over {output, context, steps}."""

    condition_type: StopConditionType = Field(
        description="What ends the run: max_turns, goal_met, quality_threshold, timeout, manual, custom.",
    )
    value: Any = Field(
        None,
        description="max_turns: a count; quality_threshold: 0 to 1; timeout: seconds; goal_met, custom: "
        "the expression (JMESPath or Python-style) that ends the run completed when truthy.",
    )
    expression: str | None = Field(
        None, description="goal_met, custom: the expression, when not given as value."
    )
    description: str | None = Field(
        None,
        description="What the condition is for, for people reading the spec.",
    )

    def condition(self) -> Any:
        """goal_met and custom: the expression (`expression`, else `value`)."""
        return self.expression if self.expression is not None else self.value


class OutputSpec(SpecModel):
    """The run's final output: 0.1.0 form (`schema_def`, `required_fields`) or a bare JSON Schema."""

    schema_def: JsonSchema | None = Field(
        None,
        description="A JSON Schema the run's final output must match.",
    )
    required_fields: list[str] = Field(
        default_factory=list,
        description="Top-level fields the final output must have (added to the schema's `required`).",
    )
    description: str | None = Field(
        None,
        description="What the final output is, for people and agents reading the spec.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_schema(cls, value: Any) -> Any:
        if (
            isinstance(value, dict)
            and value
            and not set(value) & {"schema_def", "required_fields", "description"}
        ):
            return {"schema_def": value}
        return value

    def json_schema(self) -> JsonSchema:
        """The final output's JSON Schema, with `required_fields` merged into its `required`."""
        schema = dict(self.schema_def or {})
        if self.required_fields:
            schema["required"] = sorted({*schema.get("required", []), *self.required_fields})
            schema.setdefault("type", "object")
        return schema


class InputDecl(SpecModel):
    """A run input (`start_run(inputs=...)`, `--input k=v`); merged into the context."""

    name: str = Field(description="The input's name: the key it takes in the run's context.")
    description: str | None = Field(None, description="What the input is, for whoever starts a run.")
    required: bool = Field(
        False,
        description="Whether a run must be given it: without it and without a default, start_run refuses to "
        "start.",
    )
    default: Any = Field(None, description="Its value when a run is not given it.")
