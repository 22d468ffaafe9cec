"""The spec's verification gates and the policies they carry: retries, approval rules, spec checks and
judge rules, and the `Gate` model that also accepts gate types from plugins."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from loopengt_core.model import gatetypes
from loopengt_core.model.spec.base import Backoff, OnFailure, SpecModel, argv_of


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

    _split_command = field_validator("command", mode="before")(argv_of)

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
            elif isinstance(package := data.get("plugin"), str):
                rest.pop(key)
                message = (
                    "unknown gate type '{key}': no installed plugin provides it (package '{package}' did)"
                )
                error = PydanticCustomError("unknown_gate_type", message, {"key": key, "package": package})
                errors.append(InitErrorDetails(type=error, loc=(key,), input=data.get(key)))
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
