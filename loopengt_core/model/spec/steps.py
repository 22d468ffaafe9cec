"""The spec's steps: `Step`, with its dependencies and the routes a step's output may take."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
    field_validator,
)

from loopengt_core.model.spec.base import Isolation, JsonSchema, SpecModel, argv_of


class Dependency(SpecModel):
    """A step that must complete before the step that lists it."""

    step_name: str = Field(
        description="The step that must complete first; its output becomes part of this step's input.",
    )


class Routes(SpecModel):
    """custom: choose the next step from a field of the output."""

    field: str = Field(description="Output field whose value picks the next step.")
    map: dict[str, str] = Field(default_factory=dict, description="Value -> step name.")
    default: str | None = Field(None, description="Step when the value is not in map.")

    @field_validator("map", mode="before")
    @classmethod
    def _stringify_keys(cls, value: Any) -> Any:
        # YAML reads `true:` or `1:` as non-strings; outputs are matched by their text.
        if isinstance(value, dict):
            return {_route_key(k): v for k, v in value.items()}
        return value


def _route_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Step(SpecModel):
    """One unit of the loop: an agent task (`agent`) or a command the server runs (`run`)."""

    name: str = Field(
        description="The step's name, unique in the spec: task ids, routes and dependencies name it.",
    )
    agent: str | None = Field(
        None,
        description="The agent (from `agents`) that does this step's tasks; None for a command step (`run`).",
    )
    description: str | None = Field(
        None,
        description="What the step is for; shown in the task's instructions.",
    )
    prompt_template: str | None = Field(None, description="Task text; {placeholders} are filled in.")
    dependencies: list[Dependency] = Field(
        default_factory=list,
        description="Steps that must complete before this one starts (names, or {step_name: ...}).",
    )
    verification_gates: list[str] = Field(default_factory=list, description="Names of policy gates.")
    timeout_seconds: float | None = Field(None, gt=0, description="An open task expires after this long.")
    allow_retry: bool = Field(
        True,
        description="Whether a failed attempt is retried (within the retry policy); false: one failure fails "
        "the step.",
    )
    run: list[str] | None = Field(None, description="Command step: argv run by the server, no agent.")
    output_schema: JsonSchema | None = Field(
        None, description="JSON Schema of the output; wins over the agent's."
    )
    next: list[str] | None = Field(None, description="custom: the next step, or a list to fan out.")
    routes: Routes | None = Field(None, description="custom: pick the next step from a field of the output.")
    on_failure: str | None = Field(None, description="custom: step to go to when this one fails.")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form data for people and tools reading the spec; not used by loopengt.",
    )
    isolation: Isolation | None = Field(
        None,
        description="worktree: the step's tasks work in their own git worktree and branch "
        "(`loopengt/<run>/<step>`, made from the run's recorded commit when the step starts), merged into "
        "the run's line at the step that depends on it; none: in the run's directory. Default: the "
        "spec's `isolation`.",
    )
    resolve: str | None = Field(
        None,
        description="A join of worktree branches: the step that resolves merge conflicts. On a conflict its "
        "task gets them (input.merge.conflicts: files and hunks) and works in the join's merged worktree, "
        "its gates run there, and then the join's task follows. Without it, the join's task gets them. "
        "The step runs only then (no dependencies, nothing depends on it).",
    )

    _split_run = field_validator("run", mode="before")(argv_of)

    @field_validator("dependencies", mode="before")
    @classmethod
    def _dependency_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"step_name": d} if isinstance(d, str) else d for d in value]
        return value

    @field_validator("next", mode="before")
    @classmethod
    def _next_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value
