"""The built-in templates: each is a complete, valid loop, listed by `loopengt templates`, written by `init`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loopengt_core.engine.render import BUILTIN_VARIABLES, placeholders
from loopengt_core.engine.validation import load_spec, validate_data
from loopengt_core.service.catalog import list_templates, template_names, template_text
from loopengt_core.service.specfiles import load_spec_file

HEADER = "# yaml-language-server: $schema=https://loopengt.dev/schema/loop-spec.json"
EXPECTED = {
    "planner_executor": "sequential",
    "reviewer_retry": "evaluator_optimizer",
    "supervisor_workers": "supervisor_worker",
    "research_architect": "parallel_fan_out",
    "handoff_loop": "handoff",
    "fix_tests": "sequential",
    "design": "sequential",
}
NAMES = sorted(EXPECTED)


def loopengt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("loopengt")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "loopengt_server"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def _body(text: str) -> str:
    """A spec without its first line: `init` may point the schema comment at a local schema file."""
    first, _, rest = text.partition("\n")
    assert first.startswith("# yaml-language-server: $schema="), first
    return rest


def test_the_catalog_has_every_template() -> None:
    assert set(template_names()) >= set(EXPECTED)
    patterns = {info.name: info.pattern for info in list_templates()}
    for name, pattern in EXPECTED.items():
        assert patterns[name] == pattern


@pytest.mark.parametrize("name", NAMES)
def test_template_validates(name: str) -> None:
    text = template_text(name)
    assert text.splitlines()[0] == HEADER
    spec, problems = validate_data(yaml.safe_load(text))
    assert problems == [], "\n".join(map(str, problems))
    assert spec is not None
    assert spec.pattern == EXPECTED[name]


@pytest.mark.parametrize("name", NAMES)
def test_template_is_complete(name: str) -> None:
    """A template is a starting point people copy: every part is filled in, not left to defaults."""
    raw = yaml.safe_load(template_text(name))
    spec = load_spec(template_text(name))
    assert spec.name
    assert spec.goal
    assert raw["description"]
    assert "\n" not in raw["description"].strip()
    assert "pattern" in raw
    assert {"max_turns", "retry"} <= set(raw["policy"])
    assert spec.stop_conditions
    assert spec.agents
    for agent in spec.agents:
        assert len(agent.system_prompt or "") > 80, f"agent {agent.name}: thin system prompt"
    for step in spec.steps:
        assert step.agent, f"step {step.name}: templates use agent steps"
        assert "{goal}" in (step.prompt_template or ""), step.name
        schema = step.output_schema or {}
        assert schema.get("type") == "object", step.name
        assert schema.get("properties"), step.name
    known = set(BUILTIN_VARIABLES) | set(spec.context) | {i.name for i in spec.inputs}
    for step in spec.steps:
        for path in placeholders(step.prompt_template or ""):
            assert path.split(".")[0] in known, f"{step.name}: {{{path}}}"


def test_pattern_specific_shapes() -> None:
    review = load_spec(template_text("reviewer_retry"))
    evaluator = review.steps[0].output_schema or {}
    assert set(evaluator["required"]) >= {"score", "passed", "comments"}
    assert review.stop_value("quality_threshold") == 0.8

    supervisor = load_spec(template_text("supervisor_workers"))
    decision = supervisor.steps[0].output_schema or {}
    workers = [s.name for s in supervisor.steps[1:]]
    assert decision["properties"]["next_step"]["enum"] == workers
    assert {"done", "summary"} <= set(decision["properties"])

    research = load_spec(template_text("research_architect"))
    join = research.steps[-1]
    assert [d.step_name for d in join.dependencies] == [s.name for s in research.steps[:-1]]
    assert len(research.steps) >= 3
    assert all(not s.dependencies for s in research.steps[:-1])
    assert research.policy.allow_parallel is True

    handoff = load_spec(template_text("handoff_loop"))
    step_names = {s.name for s in handoff.steps}
    targets = [
        set(s.output_schema["properties"]["handoff_to"]["enum"])
        for s in handoff.steps
        if s.output_schema and "handoff_to" in s.output_schema.get("properties", {})
    ]
    assert targets
    assert all(t <= step_names for t in targets)

    fix = load_spec(template_text("fix_tests"))
    implement = fix.step("implement")
    assert "{feedback}" in (implement.prompt_template or "")
    gates = [fix.gate(g) for g in implement.verification_gates]
    command_gates = [g for g in gates if g.command]
    # the default; `init` writes the project's own (tests/test_test_command.py)
    assert [g.command for g in command_gates] == [["python3", "-m", "pytest", "-q"]]
    assert command_gates[0].on_failure == "retry"
    assert command_gates[0].feedback is None, "the failing test output itself must become the feedback"
    assert implement.allow_retry
    assert fix.policy.retry.max_retries >= 1


@pytest.mark.parametrize("where", [*NAMES, "examples/loop.yaml"])
def test_gates_and_command_steps_do_not_assume_python_on_path(where: str) -> None:
    """`python` exists only inside a virtualenv on Debian and others: a gate calling it cannot start."""
    if where.endswith(".yaml"):
        spec, _ = load_spec_file(Path(__file__).parents[1] / where)
    else:
        spec = load_spec(template_text(where))
    programs = [g.command[0] for g in spec.policy.verification_gates if g.command]
    programs += [s.run[0] for s in spec.steps if s.run]
    assert "python" not in programs, where


def test_templates_command_lists_names_and_patterns() -> None:
    result = loopengt("templates")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name, pattern in EXPECTED.items():
        row = [line for line in lines if line.split() and line.split()[0] == name]
        assert row, f"{name} not listed:\n{result.stdout}"
        assert pattern in row[0].split()


@pytest.mark.parametrize("name", NAMES)
def test_init_writes_a_spec_that_validates(name: str, tmp_path: Path) -> None:
    target = tmp_path / "tmp" / "loop.yaml"
    result = loopengt("init", "--template", name, "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert _body(target.read_text("utf-8")) == _body(template_text(name))
    spec, _ = load_spec_file(target)
    assert spec.pattern == EXPECTED[name]


def test_init_output_passes_validate_command(tmp_path: Path) -> None:
    result = loopengt("init", "--template", "fix_tests", "--output", "tmp/loop.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checked = loopengt("validate", "tmp/loop.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("valid: loop 'fix-tests' (sequential")


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "loop.yaml"
    first = loopengt("init", "--template", "planner_executor", "--output", str(target))
    assert first.returncode == 0, first.stderr
    target.write_text("# my edits\n" + target.read_text("utf-8"), encoding="utf-8")
    edited = target.read_text("utf-8")

    again = loopengt("init", "--template", "fix_tests", "--output", str(target))
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert target.read_text("utf-8") == edited

    forced = loopengt("init", "--template", "fix_tests", "--output", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert _body(target.read_text("utf-8")) == _body(template_text("fix_tests"))


def test_init_unknown_template_names_the_known_ones(tmp_path: Path) -> None:
    target = tmp_path / "loop.yaml"
    result = loopengt("init", "--template", "no_such_template", "--output", str(target))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    line = next(line for line in output.splitlines() if "no_such_template" in line)
    for name in NAMES:
        assert name in line
    assert not target.exists()
