"""Specs written for loopengt 0.1.0 load unchanged, and every field they set survives loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import SPECS_010

from loopengt_core.model.spec import LoopSpec, json_schema
from loopengt_core.service.specfiles import load_spec_file

SAMPLES = SPECS_010
SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml"))
SCHEMA_FILE = Path(__file__).parents[1] / "loop-spec.schema.json"


def loopengt(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("loopengt")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "loopengt_server"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=False)


def load(name: str) -> LoopSpec:
    spec, _ = load_spec_file(SAMPLES / name)
    return spec


def test_the_samples_are_there() -> None:
    assert {p.name for p in SAMPLE_FILES} >= {
        "generated_by_design.yaml",
        "handoff_pipeline.yaml",
        "parallel_research.yaml",
        "review_until_approved.yaml",
        "supervisor_triage.yaml",
    }


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_cli_validates_sample(path: Path) -> None:
    result = loopengt("validate", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("valid: loop ")
    assert "Traceback" not in result.stdout + result.stderr


def _normalised(raw: Any) -> Any:
    """0.1.0 shorthands the loader expands: `dependencies: [name]`, a numeric `version`."""
    if isinstance(raw, dict):
        out = {k: _normalised(v) for k, v in raw.items()}
        if isinstance(out.get("dependencies"), list):
            out["dependencies"] = [{"step_name": d} if isinstance(d, str) else d for d in out["dependencies"]]
        return out
    if isinstance(raw, list):
        return [_normalised(x) for x in raw]
    return raw


def _assert_kept(raw: Any, loaded: Any, where: str = "") -> None:
    """Every key and value written in the file is in the loaded spec, unchanged."""
    if isinstance(raw, dict):
        assert isinstance(loaded, dict), f"{where}: expected a mapping, loaded {loaded!r}"
        for key, value in raw.items():
            assert key in loaded, f"{where}.{key} was dropped on loading"
            _assert_kept(value, loaded[key], f"{where}.{key}")
    elif isinstance(raw, list):
        assert isinstance(loaded, list), f"{where}: expected a list, loaded {loaded!r}"
        assert len(raw) == len(loaded), f"{where}: {len(raw)} items written, {len(loaded)} loaded"
        for i, (a, b) in enumerate(zip(raw, loaded, strict=True)):
            _assert_kept(a, b, f"{where}[{i}]")
    else:
        assert raw == loaded, f"{where}: written {raw!r}, loaded {loaded!r}"
        assert type(raw) is type(loaded) or isinstance(raw, int | float), f"{where}: type changed"


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_written_field_survives_loading(path: Path) -> None:
    spec, text = load_spec_file(path)
    assert text == path.read_text("utf-8")
    raw = _normalised(yaml.safe_load(text))
    _assert_kept(raw, spec.model_dump(mode="json", exclude_unset=True))


def test_generated_by_design() -> None:
    spec = load("generated_by_design.yaml")
    assert spec.name == "fix-the-failing-tests"
    assert spec.version == "1.0"
    assert spec.goal == "Fix the failing tests"
    assert spec.pattern == "sequential"
    assert [a.name for a in spec.agents] == ["planner", "executor"]
    assert spec.agents[0].description == "Plans the approach for: Fix the failing tests"
    assert spec.agents[0].capabilities == ["planning"]
    assert spec.agents[1].capabilities == ["code_generation", "tool_use"]
    assert [s.name for s in spec.steps] == ["plan", "execute"]
    assert [s.agent for s in spec.steps] == ["planner", "executor"]
    assert spec.steps[0].dependencies == []
    assert [d.step_name for d in spec.steps[1].dependencies] == ["plan"]
    assert spec.steps[1].description == "Execute the plan"
    assert spec.policy.max_turns == 20
    assert spec.policy.max_total_time_seconds == 600
    assert [(c.condition_type, c.value) for c in spec.stop_conditions] == [
        ("max_turns", 20),
        ("goal_met", "true"),
    ]


def test_handoff_pipeline() -> None:
    spec = load("handoff_pipeline.yaml")
    assert spec.pattern == "handoff"
    assert spec.version is None
    assert [(a.name, a.capabilities) for a in spec.agents] == [
        ("analyst", ["research"]),
        ("implementer", ["code_generation"]),
        ("reviewer", ["code_review"]),
    ]
    assert [s.name for s in spec.steps] == ["analyse", "implement", "review"]
    assert [[d.step_name for d in s.dependencies] for s in spec.steps] == [[], ["analyse"], ["implement"]]
    assert spec.policy.max_turns == 6
    assert spec.stop_conditions == []


def test_parallel_research() -> None:
    spec = load("parallel_research.yaml")
    assert spec.pattern == "parallel_fan_out"
    assert spec.trigger is not None
    assert spec.trigger.trigger_type == "manual"
    assert [s.name for s in spec.steps] == [
        "research_httpx",
        "research_aiohttp",
        "research_requests",
        "recommend",
    ]
    assert spec.steps[0].prompt_template == "Evaluate httpx for: {goal}"
    assert [d.step_name for d in spec.step("recommend").dependencies] == [
        "research_httpx",
        "research_aiohttp",
        "research_requests",
    ]
    assert spec.step("recommend").agent == "architect"
    assert spec.agent("researcher").capabilities == ["research", "web_search"]
    assert spec.policy.max_turns == 10
    assert spec.policy.allow_parallel is True
    assert spec.policy.max_concurrency == 3
    assert spec.policy.fail_fast is False
    assert spec.stop_value("max_turns") == 10


def test_review_until_approved() -> None:
    spec = load("review_until_approved.yaml")
    assert spec.version == "1.2"
    assert spec.description == "Write a change, review it, revise until the reviewer approves."
    assert spec.pattern == "evaluator_optimizer"
    assert [s.name for s in spec.steps] == ["review", "improve"]

    reviewer = spec.agent("reviewer")
    assert reviewer.system_prompt == "You are a strict code reviewer. Score from 0 to 1."
    assert reviewer.capabilities == ["code_review", "evaluation"]
    assert reviewer.output_schema is not None
    assert reviewer.output_schema["required"] == ["score", "comments"]
    assert reviewer.output_schema["properties"]["score"] == {"type": "number", "minimum": 0, "maximum": 1}
    assert reviewer.timeout_seconds == 600
    assert reviewer.retry is not None
    assert reviewer.retry.max_retries == 2
    assert reviewer.retry.backoff_seconds == 1.0
    assert reviewer.retry.backoff_multiplier == 2.0
    assert reviewer.config == {"provider": "openai", "model": "gpt-4o", "temperature": 0.2}
    assert spec.agent("coder").tools == ["pytest"]

    review, improve = spec.steps
    assert review.agent == "reviewer"
    assert review.verification_gates == ["has_score"]
    assert review.prompt_template == "Review the change for goal: {goal}"
    assert improve.agent == "coder"
    assert [d.step_name for d in improve.dependencies] == ["review"]
    assert improve.timeout_seconds == 900
    assert improve.allow_retry is True
    assert improve.prompt_template == "Revise the change. Reviewer feedback: {feedback}"

    assert len(spec.tools) == 1
    tool = spec.tools[0]
    assert (tool.name, tool.description, tool.tool_type, tool.timeout_seconds) == (
        "pytest",
        "Run the test suite",
        "builtin",
        300,
    )

    policy = spec.policy
    assert policy.max_turns == 12
    assert policy.max_total_time_seconds == 3600
    assert policy.retry.max_retries == 3
    assert policy.retry.initial_delay_seconds == 1.0
    assert policy.retry.backoff == "exponential"
    assert policy.retry.max_delay_seconds == 30.0
    assert policy.retry.jitter is True
    assert policy.allow_parallel is False
    assert policy.max_concurrency == 1
    assert policy.fail_fast is True
    gate = spec.gate("has_score")
    assert gate.description == "The review carries a numeric score"
    assert gate.condition == "output.score != null"
    assert gate.on_failure == "retry"
    assert gate.command is None
    assert gate.approval is False

    assert [(c.condition_type, c.value) for c in spec.stop_conditions] == [
        ("quality_threshold", 0.8),
        ("max_turns", 12),
    ]
    assert spec.stop_conditions[0].description == "Stop when the reviewer scores 0.8 or more"

    assert spec.output_schema is not None
    assert spec.output_schema.schema_def == {"type": "object", "properties": {"summary": {"type": "string"}}}
    assert spec.output_schema.required_fields == ["summary"]
    assert spec.output_schema.description == "What changed"
    assert spec.output_schema.json_schema()["required"] == ["summary"]
    assert spec.context == {"repository": "acme/signup"}
    assert spec.metadata == {"owner": "platform-team"}


def test_supervisor_triage() -> None:
    spec = load("supervisor_triage.yaml")
    assert spec.pattern == "supervisor_worker"
    assert [s.name for s in spec.steps] == ["supervise", "fix_bug", "update_docs"]
    assert [s.agent for s in spec.steps] == ["lead", "fixer", "writer"]
    assert spec.steps[0].prompt_template == "Goal: {goal}. Choose the next worker step, or finish."
    assert all(s.dependencies == [] for s in spec.steps)
    assert spec.agent("fixer").capabilities == ["code_generation", "testing"]
    assert spec.policy.max_turns == 15
    assert [(c.condition_type, c.value) for c in spec.stop_conditions] == [
        ("max_turns", 15),
        ("goal_met", "true"),
    ]


def test_committed_json_schema_is_current() -> None:
    assert SCHEMA_FILE.exists(), (
        "loop-spec.schema.json is missing: run `loopengt schema > loop-spec.schema.json`"
    )
    committed = json.loads(SCHEMA_FILE.read_text("utf-8"))
    assert committed == json_schema(), (
        "loop-spec.schema.json is stale: run `loopengt schema > loop-spec.schema.json` and commit it"
    )


def test_schema_command_prints_the_schema() -> None:
    result = loopengt("schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json_schema()
