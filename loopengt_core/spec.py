"""The loop spec: pydantic models for every loopengt 0.1.0 field plus the additive extensions.

The models check structure only (types, enums, unknown keys). Everything that relates one part of a
spec to another (references, cycles, expressions, placeholders, pattern rules) lives in
`validation/`, so that one run reports every problem at once.
"""

from __future__ import annotations

import shlex
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from loopengt_core import gatetypes
from loopengt_core.budget import Budget
from loopengt_core.stuck import StuckPolicy

Pattern = Literal[
    "sequential", "parallel_fan_out", "handoff", "supervisor_worker", "evaluator_optimizer", "custom"
]
PATTERNS: tuple[str, ...] = typing.get_args(Pattern)
Backoff = Literal["none", "fixed", "linear", "exponential"]
OnFailure = Literal["retry", "abort"]
StopConditionType = Literal["max_turns", "goal_met", "quality_threshold", "timeout", "manual", "custom"]
ToolType = Literal["builtin", "mcp", "function", "api", "http", "shell", "custom"]
TriggerType = Literal["manual", "schedule", "event", "webhook", "api"]
WorkspaceMode = Literal["auto", "git", "none"]
Isolation = Literal["worktree", "none"]
WorktreesOnEnd = Literal["delete", "keep"]

JsonSchema = dict[str, Any]


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _argv(value: Any) -> Any:
    """Accept `"pytest -q"` as well as `["pytest", "-q"]`; both become an argv list (never a shell)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command {value!r}: {exc}") from exc
    return value


class RetryPolicy(SpecModel):
    """How often and how soon a failed step is tried again. `max_retries: N` allows N + 1 attempts."""

    max_retries: int = Field(3, ge=0, description="Retries after the first attempt.")
    initial_delay_seconds: float = Field(1.0, ge=0, description="Delay before the first re-run.")
    backoff: Backoff = Field("exponential", description="How the delay grows between re-runs.")
    max_delay_seconds: float = Field(60.0, ge=0, description="Upper bound of one delay.")
    jitter: bool = Field(False, description="Randomise delays (deterministically, from the run's seed).")
    backoff_seconds: float | None = Field(
        None, ge=0, description="0.1.0 agent form of initial_delay_seconds."
    )
    backoff_multiplier: float | None = Field(None, ge=1, description="0.1.0 agent form: delay growth factor.")


ApprovalChannel = Literal["cli", "elicitation", "web"]
APPROVAL_CHANNELS: tuple[ApprovalChannel, ...] = ("cli", "elicitation", "web")


class ApprovalRule(SpecModel):
    """An approval gate that names the channels a person may answer it through."""

    via: list[ApprovalChannel] = Field(
        default_factory=lambda: list(APPROVAL_CHANNELS),
        min_length=1,
        description="Channels whose answer counts: `cli` (`loopengt approve`), `web` (the web view), "
        "`elicitation` (a form the agent's own MCP client shows). Leave `elicitation` out so that nothing "
        "answered inside the agent's client (which may auto-accept) can approve.",
    )


class SpecCheck(SpecModel):
    """A gate over a loop spec an agent drafted (the `design` loop): validation, then maybe a dry run."""

    field: str = Field(
        "spec",
        min_length=1,
        description="The output field that holds the drafted spec (YAML text or an object).",
    )
    dry_run: bool = Field(
        False,
        description="Also drive the draft with a scripted agent, executing nothing (commands and every "
        "gate count as passing), and fail unless it reaches `completed`.",
    )


class JudgeRule(SpecModel):
    """A judge gate: another agent role scores the output against a rubric (see `judge.py`)."""

    agent: str = Field(
        min_length=1,
        description="The role that judges: an agent in `agents`, not the judged step's own (the agent under "
        "judgement cannot answer its own judge task).",
    )
    rubric: str = Field(min_length=1, description="What the judge scores the output against.")
    threshold: float = Field(
        ge=0,
        le=1,
        description="The step passes when the judge's score (0 to 1) is at least this and its `passed` is "
        "true; otherwise the judge's reasons are the retry's feedback.",
    )


class Gate(SpecModel):
    """A check after a step's output arrives. Exactly one of condition, command, approval, loop_spec, judge or
    a plugin's."""

    name: str = Field(
        description="The gate's name, unique in the spec: steps list it in `verification_gates`, and its "
        "results and feedback name it.",
    )
    description: str | None = Field(None, description="What the gate checks, for people reading the spec.")
    condition: str | None = Field(
        None,
        description="JMESPath or a Python-style expression over {output, context, steps, attempt}; "
        "passes when truthy.",
    )
    command: list[str] | None = Field(None, description="argv run without a shell; passes on exit code 0.")
    approval: bool | ApprovalRule = Field(
        False,
        description="A person approves: `true` (through any channel: MCP elicitation, `loopengt approve`, "
        "the web view) or `{via: [cli, web]}` to name the channels that count.",
    )
    loop_spec: SpecCheck | None = Field(
        None,
        description="The output holds a loop spec: passes when it validates (and, with dry_run, completes a "
        "dry run); every problem comes back with its location.",
    )
    judge: JudgeRule | None = Field(
        None,
        description="Another agent role judges the output: `{agent, rubric, threshold}`. Checked after the "
        "other gates but approval; the judge's task has a fixed output schema {score, passed, reasons}.",
    )
    prompt: str | None = Field(None, description="What the approver is asked.")
    on_failure: OnFailure = Field(
        "retry",
        description="What a failed check does: retry (the step runs again with the gate's feedback, within "
        "its retry policy) or abort (the step fails at once).",
    )
    timeout_seconds: float | None = Field(None, gt=0, description="Command gates: kill after this long.")
    feedback: str | None = Field(None, description="Text given to the agent when this gate fails.")
    plugin: str | None = Field(
        None,
        description="The package that provides this gate's type, when a plugin does: validation names it "
        "if the package is not installed.",
    )
    _plugin_configs: dict[str, Any] = PrivateAttr(default_factory=dict)

    _split_command = field_validator("command", mode="before")(_argv)

    @model_validator(mode="wrap")
    @classmethod
    def _plugin_gate_types(cls, data: Any, handler: ModelWrapValidatorHandler[Gate]) -> Gate:
        """Keys of gate types from plugins are checked by their own config type, errors located under
        the key; any other unknown key is left to `extra="forbid"`."""
        if not isinstance(data, dict):
            return handler(data)
        rest = dict(data)
        configs: dict[str, Any] = {}
        errors: list[InitErrorDetails] = []
        for key in [k for k in data if isinstance(k, str) and k not in cls.model_fields]:
            if gatetypes.find(key) is not None:
                try:
                    configs[key] = gatetypes.adapter(key).validate_python(rest.pop(key))
                except ValidationError as exc:
                    errors += [_located(e, (key,)) for e in exc.errors()]
            elif isinstance(data.get("plugin"), str):
                package = data["plugin"]
                rest.pop(key)
                message = (
                    "unknown gate type '{key}': no installed plugin provides it (package '{package}' did)"
                )
                error = PydanticCustomError("unknown_gate_type", message, {"key": key, "package": package})
                errors.append(InitErrorDetails(type=error, loc=(key,), input=data[key]))
        try:
            gate = handler(rest)
        except ValidationError as exc:
            errors += [_located(e, ()) for e in exc.errors()]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        gate._plugin_configs = configs
        return gate

    def plugin_configs(self) -> dict[str, Any]:
        """The configurations of this gate's plugin gate types, by key (checked by their config types)."""
        return dict(self._plugin_configs)

    def approval_channels(self) -> tuple[ApprovalChannel, ...]:
        """The channels whose answer counts for this approval gate (none: not an approval gate)."""
        if isinstance(self.approval, ApprovalRule):
            return tuple(self.approval.via)
        return APPROVAL_CHANNELS if self.approval else ()


def _located(error: Any, prefix: tuple[int | str, ...]) -> InitErrorDetails:
    """A pydantic error re-raised from a wrap validator, its location under `prefix`."""
    found = InitErrorDetails(type=error["type"], loc=(*prefix, *error["loc"]), input=error["input"])
    if "ctx" in error:
        found["ctx"] = error["ctx"]
    return found


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

    _split_run = field_validator("run", mode="before")(_argv)

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


class Agent(SpecModel):
    """A role the coding agent plays; the server never calls a model itself."""

    name: str = Field(description="The agent's name, unique in the spec: steps name it in `agent`.")
    description: str | None = Field(
        None,
        description="What the agent does, for people reading the spec (its tasks get `system_prompt`).",
    )
    system_prompt: str | None = Field(
        None,
        description="The agent's role, rendered at the top of each of its tasks' instructions ({placeholders} "
        "filled in).",
    )
    capabilities: list[str] = Field(
        default_factory=list,
        description="What the agent can do, as free-form labels. Kept from loopengt 0.1.0; loopengt itself "
        "does not act on it.",
    )
    input_schema: JsonSchema | None = Field(
        None,
        description="A JSON Schema of the agent's input. Kept from loopengt 0.1.0; loopengt itself does not "
        "act on it.",
    )
    output_schema: JsonSchema | None = Field(
        None,
        description="A JSON Schema every output of this agent must match, unless the step has its own.",
    )
    tools: list[str] = Field(
        default_factory=list,
        description="Tools the agent may use: names from the spec's `tools`, checked against them when it "
        "declares any.",
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="An open task of this agent expires after this long, unless its step sets its own.",
    )
    retry: RetryPolicy | None = Field(
        None,
        description="The retry policy of this agent's steps, instead of the policy's `retry`.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form agent settings. Kept from loopengt 0.1.0; loopengt itself does not act on it.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form data for people and tools reading the spec; not used by loopengt.",
    )


class Tool(SpecModel):
    """A tool the agents may use (0.1.0); informational for the server."""

    name: str = Field(description="The tool's name, unique in the spec: agents list it in `tools`.")
    description: str | None = Field(None, description="What the tool does.")
    tool_type: ToolType = Field(
        "builtin",
        description="What kind of tool it is (builtin, mcp, function, api, http, shell, custom). Kept from "
        "loopengt 0.1.0; loopengt itself does not act on it.",
    )
    schema_def: JsonSchema | None = Field(
        None,
        description="A JSON Schema of the tool's arguments. Kept from loopengt 0.1.0; loopengt itself does "
        "not act on it.",
    )
    auth: dict[str, Any] | None = Field(
        None,
        description="How the tool authenticates. Kept from loopengt 0.1.0; loopengt itself does not act on "
        "it.",
    )
    mcp_server: str | None = Field(
        None,
        description="The MCP server that serves the tool (tool_type mcp). Kept from loopengt 0.1.0; loopengt "
        "itself does not act on it.",
    )
    function_ref: str | None = Field(
        None,
        description="The function that implements the tool (tool_type function). Kept from loopengt 0.1.0; "
        "loopengt itself does not act on it.",
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="How long a call may take. Kept from loopengt 0.1.0; loopengt itself does not act on it.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form tool settings. Kept from loopengt 0.1.0; loopengt itself does not act on it.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form data for people and tools reading the spec; not used by loopengt.",
    )


class Trigger(SpecModel):
    """What starts the loop (0.1.0); kept for compatibility, runs start with start_run."""

    trigger_type: TriggerType = Field(
        "manual",
        description="What starts a run (manual, schedule, event, webhook, api). Kept from loopengt 0.1.0; "
        "loopengt itself does not act on it. Runs start with start_run or `loopengt run`.",
    )
    schedule: str | None = Field(
        None,
        description="When a scheduled trigger fires (a cron expression). Kept from loopengt 0.1.0; loopengt "
        "itself does not act on it.",
    )
    event: str | None = Field(
        None,
        description="The event that fires an event trigger. Kept from loopengt 0.1.0; loopengt itself does "
        "not act on it.",
    )
    description: str | None = Field(None, description="What starts the loop, for people reading the spec.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form trigger settings. Kept from loopengt 0.1.0; loopengt itself does not act on "
        "it.",
    )


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


CONTEXT_FROM_MAX = 20  # runs a spec or start_run may read memory from (loopengt_core.memory)


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
