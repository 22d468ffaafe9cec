"""A new pure gate type is one module plus one `register` call: this file is that module.

The toy `min_length: {field, chars}` gate is registered here and nowhere else; the spec uses it, validation
checks its configuration (errors located under its key), a run judges outputs with it (feedback on failure)
and the trace shows it like any built-in gate (GatePassed/GateFailed events, an OpenTelemetry gate span).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, ConfigDict, Field

from loopengt_core.engine.validation import validate_data
from loopengt_core.model import gatetypes
from loopengt_core.model.events import GateFailed, GatePassed
from loopengt_core.model.gatetypes import GateContext
from loopengt_core.model.state import GateResult
from loopengt_core.service.runs import Runs
from loopengt_core.service.telemetry import RunTracer
from loopengt_core.store.files import FileStore


class MinLengthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1)
    chars: int = Field(ge=1)


class MinLength:
    """`min_length: {field, chars}`: the output's text field has at least `chars` characters."""

    key = "min_length"
    config = MinLengthConfig

    def check(self, config: MinLengthConfig, output: Any, context: GateContext) -> GateResult:
        text = output.get(config.field) if isinstance(output, dict) else None
        if isinstance(text, str) and len(text) >= config.chars:
            return GateResult(name=context.gate, passed=True)
        got = f"{len(text)}" if isinstance(text, str) else "no text"
        return GateResult(
            name=context.gate,
            passed=False,
            feedback=f"output.{config.field} needs at least {config.chars} characters (got {got})",
        )

    def problems(self, config: MinLengthConfig) -> list[str]:
        return [] if config.field.isidentifier() else [f"field '{config.field}' is not a plain key"]


@pytest.fixture
def min_length() -> Iterator[None]:
    gatetypes.register(MinLength())
    yield
    gatetypes.unregister("min_length")


def spec(gate: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "toy",
        "goal": "write a long enough summary",
        "workspace": "none",
        "agents": [{"name": "writer"}],
        "steps": [{"name": "write", "agent": "writer", "verification_gates": ["long_enough"]}],
        "policy": {
            "retry": {"max_retries": 2, "backoff": "none", "initial_delay_seconds": 0},
            "verification_gates": [{"name": "long_enough", **gate}],
        },
    }


def problems_of(data: dict[str, Any]) -> dict[str, str]:
    found, problems = validate_data(data)
    assert (found is None) == bool(problems)
    return {p.location: p.message for p in problems}


def test_a_registered_gate_type_validates_its_configuration_with_locations(min_length: None) -> None:
    gate = "policy.verification_gates[0]"
    assert problems_of(spec({"min_length": {"field": "summary", "chars": 10}})) == {}
    bad = problems_of(spec({"min_length": {"field": "summary", "chars": 0, "colour": "red"}}))
    assert bad[f"{gate}.min_length.chars"].startswith("Input should be greater than or equal to 1")
    assert bad[f"{gate}.min_length.colour"].startswith("unknown key 'colour' (allowed: chars, field)")
    assert problems_of(spec({"min_length": {"field": "a.b", "chars": 3}})) == {
        f"{gate}.min_length": "field 'a.b' is not a plain key"
    }
    both = problems_of(spec({"min_length": {"field": "summary", "chars": 3}, "condition": "output.summary"}))
    assert both[gate] == (
        "a gate needs exactly one of 'condition', 'command', 'approval: true', 'loop_spec', 'judge' or 'min_length' "
        "(has condition, min_length)"
    )


def test_an_unregistered_gate_type_is_named_with_its_former_package() -> None:
    gate = "policy.verification_gates[0]"
    plain = problems_of(spec({"min_length": {"field": "summary", "chars": 3}}))
    assert plain[f"{gate}.min_length"].startswith("unknown key 'min_length' (allowed: ")
    assert plain[f"{gate}.min_length"].endswith("no installed plugin provides a gate type 'min_length')")
    named = problems_of(spec({"min_length": {"field": "summary", "chars": 3}, "plugin": "toy-gates"}))
    assert named[f"{gate}.min_length"] == (
        "unknown gate type 'min_length': no installed plugin provides it (package 'toy-gates' did)"
    )


def test_a_run_judges_outputs_with_the_toy_gate_and_traces_it(min_length: None, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    runs = Runs(
        FileStore(tmp_path / "store"), cwd=tmp_path, tracer=RunTracer([SimpleSpanProcessor(exporter)])
    )
    run_id = runs.start_run(spec=spec({"min_length": {"field": "summary", "chars": 12}})).run_id
    retry = runs.step(run_id, "write#1", {"summary": "short"})
    assert [t.task_id for t in retry.tasks] == ["write#2"]
    assert retry.tasks[0].feedback == "output.summary needs at least 12 characters (got 5)"
    assert runs.step(run_id, "write#2", {"summary": "long enough by now"}).status == "completed"

    verdicts = [e for e in runs.store.events(run_id) if isinstance(e, GatePassed | GateFailed)]
    assert [(type(e).__name__, e.gate, e.task_id) for e in verdicts] == [
        ("GateFailed", "long_enough", "write#1"),
        ("GatePassed", "long_enough", "write#2"),
    ]
    spans = [s for s in exporter.get_finished_spans() if s.name == "loopengt.gate long_enough"]
    assert [s.attributes and s.attributes["loopengt.gate.passed"] for s in spans] == [False, True]


class Explodes(MinLength):
    """A gate type with a bug: its check raises."""

    key = "explodes"

    def check(self, config: MinLengthConfig, output: Any, context: GateContext) -> GateResult:
        raise RuntimeError("boom")


def test_a_gate_type_that_raises_fails_its_gate_not_the_service(tmp_path: Path) -> None:
    gatetypes.register(Explodes())
    try:
        runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
        run_id = runs.start_run(spec=spec({"explodes": {"field": "summary", "chars": 1}})).run_id
        retry = runs.step(run_id, "write#1", {"summary": "anything"})
    finally:
        gatetypes.unregister("explodes")
    assert retry.tasks[0].feedback == (
        "gate 'long_enough' (type 'explodes') could not judge the output: RuntimeError: boom"
    )
