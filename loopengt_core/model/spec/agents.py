"""The spec's agents, the tools it declares and the triggers that start it (descriptive parts: the
engine reads agents' names, prompts and timeouts; tools and triggers are carried for the caller)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
)

from loopengt_core.model.spec.base import JsonSchema, SpecModel, ToolType, TriggerType
from loopengt_core.model.spec.gates import RetryPolicy


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
