"""The whole loop spec (`LoopSpec`), its lookups by name, and the JSON Schema clients validate against."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
)

from loopengt_core.model.spec.agents import Agent, Tool, Trigger
from loopengt_core.model.spec.base import Isolation, Pattern, SpecModel, WorkspaceMode, WorktreesOnEnd
from loopengt_core.model.spec.gates import Gate
from loopengt_core.model.spec.policy import InputDecl, OutputSpec, Policy, StopCondition
from loopengt_core.model.spec.steps import Step

CONTEXT_FROM_MAX = 20  # runs a spec or start_run may read memory from (loopengt_core.service.memory)


class LoopSpec(SpecModel):
    """A loop.yaml. Every loopengt 0.1.0 field loads unchanged; extensions are additive."""

    name: str = Field(description="The loop's name: a run's id starts with it, and listings show it.")
    version: str | None = Field(
        None,
        description="The spec's own version, free-form (for its authors; loopengt does not compare it).",
    )
    description: str | None = Field(
        None,
        description="What the loop does, for people and agents reading the spec.",
    )
    goal: str = Field(
        "",
        description="What the loop is for: every task gets it (its input's `goal`, its instructions' "
        "`Goal:` line, and `{goal}` in prompts).",
    )
    pattern: Pattern = Field(
        "sequential",
        description="How steps follow each other: sequential, parallel_fan_out, handoff, supervisor_worker, "
        "evaluator_optimizer or custom (next, routes, on_failure).",
    )
    trigger: Trigger | None = Field(
        None,
        description="What starts the loop. Kept from loopengt 0.1.0; loopengt itself does not act on it.",
    )
    agents: list[Agent] = Field(default_factory=list, description="The agents that do the steps' tasks.")
    tools: list[Tool] = Field(
        default_factory=list,
        description="Tools the agents may use (declared so agents can name them).",
    )
    steps: list[Step] = Field(min_length=1, description="The steps of the loop, in order.")
    policy: Policy = Field(
        default_factory=Policy,
        description="Run-wide rules: turns, time, retries, shared gates, concurrency, budget, stuck "
        "detection.",
    )
    stop_conditions: list[StopCondition] = Field(
        default_factory=list,
        description="Conditions that end a run early (completed or failed).",
    )
    output_schema: OutputSpec | None = Field(
        None,
        description="What the run's final output must look like; a run whose final output misses it fails.",
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Data every task gets in its input (`context`); a run's inputs are merged into it.",
    )
    inputs: list[InputDecl] = Field(
        default_factory=list,
        description="Inputs a run takes (start_run(inputs=...), `--input k=v`), merged into the context.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form data for people and tools reading the spec; not used by loopengt.",
    )
    workspace: WorkspaceMode = Field(
        "auto",
        description="Record the code (a git tree of the run's directory) with each step: git, none, or auto "
        "(git when the run starts inside a git work tree).",
    )
    context_from: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]] = Field(
        default_factory=list,
        max_length=CONTEXT_FROM_MAX,
        description="Memory across runs: ids of earlier runs in the same store whose final outputs and each "
        "step's last accepted output every task's input.memory carries (older ones shortened past 16 000 "
        "bytes); start_run(context_from=...) adds more.",
    )

    isolation: Isolation = Field(
        "none",
        description="The default isolation of branch steps (a step another step depends on, that depends "
        "on none itself): worktree gives each its own git worktree, merged at the join.",
    )
    worktrees: WorktreesOnEnd = Field(
        "delete",
        description="What happens to the run's worktrees (under .loopengt/worktrees/) when it completes: "
        "delete (the default; the joined result stays on its branch) or keep. A failed or cancelled run "
        "keeps them for inspection; `loopengt prune` removes them.",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `version: 1.0` in YAML is a float; 0.1.0 wrote it either way.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    def step(self, name: str) -> Step:
        """The step named `name`.

        Raises:
            KeyError: no such step (validation has checked every reference).
        """
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def agent(self, name: str) -> Agent:
        """The agent named `name`.

        Raises:
            KeyError: no such agent.
        """
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    def gate(self, name: str) -> Gate:
        """The policy gate named `name`.

        Raises:
            KeyError: no such gate.
        """
        for gate in self.policy.verification_gates:
            if gate.name == name:
                return gate
        raise KeyError(name)

    def isolated(self, step: Step) -> bool:
        """Whether `step` works in its own worktree: its own `isolation`, else the spec's for branch
        steps (some step depends on it, and it depends on none)."""
        if step.isolation is not None:
            return step.isolation == "worktree"
        if self.isolation != "worktree" or step.dependencies:
            return False
        return any(d.step_name == step.name for s in self.steps for d in s.dependencies)

    def joins(self, step: Step) -> list[str]:
        """The isolated steps `step` depends on, in spec order: their branches merge before it runs."""
        wanted = {d.step_name for d in step.dependencies}
        return [s.name for s in self.steps if s.name in wanted and self.isolated(s)]

    def resolvers(self) -> set[str]:
        """The steps some join names as its `resolve`: they run only on that join's conflicts."""
        return {s.resolve for s in self.steps if s.resolve is not None}

    def stop_value(self, kind: str) -> Any:
        """The `value` of the first stop condition of type `kind`; None without one."""
        for condition in self.stop_conditions:
            if condition.condition_type == kind:
                return condition.value
        return None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of loop.yaml, for editors (yaml-language-server) and agents."""
    schema = LoopSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "loopengt loop spec"
    return schema
