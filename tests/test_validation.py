"""Validation reports every problem at once, each as `location: message`, and never a traceback."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.engine.validation import Problem, SpecError, load_spec, validate_data


def loopengt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("loopengt")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "loopengt_server"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


BASE: dict[str, Any] = {
    "name": "base",
    "goal": "Ship it",
    "pattern": "sequential",
    "agents": [{"name": "coder"}, {"name": "reviewer"}],
    "steps": [
        {"name": "plan", "agent": "coder", "prompt_template": "Plan: {goal}"},
        {"name": "build", "agent": "coder", "dependencies": [{"step_name": "plan"}]},
        {"name": "review", "agent": "reviewer", "verification_gates": ["has_score"]},
    ],
    "policy": {
        "max_turns": 10,
        "retry": {"max_retries": 2, "backoff": "fixed"},
        "verification_gates": [{"name": "has_score", "condition": "output.score != null"}],
    },
    "stop_conditions": [{"condition_type": "max_turns", "value": 10}],
}


def spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    return data


def problems_of(data: Any) -> list[Problem]:
    loaded, problems = validate_data(data)
    assert problems, "expected problems, the spec validated"
    assert loaded is None
    return problems


def only(data: Any) -> Problem:
    problems = problems_of(data)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def at(problems: list[Problem], where: str) -> str:
    found = [p.message for p in problems if p.location == where]
    assert found, f"no problem at {where}; got:\n" + "\n".join(map(str, problems))
    return found[0]


def test_base_is_valid() -> None:
    loaded, problems = validate_data(spec())
    assert problems == []
    assert loaded is not None


# --- everything at once, through the command ---------------------------------------------------

FIVE_MISTAKES = """\
name: five-mistakes
goal: Ship it
pattern: sequentail
agents:
  - name: coder
  - name: reviewer
steps:
  - name: plan
    agent: coder
    promt_template: "Plan: {goal}"
  - name: build
    agent: coder
    dependencies: [{step_name: plann}]
    verification_gates: [tests_pass]
  - name: review
    agent: revieww
    prompt_template: "Review {unknown_thing}"
policy:
  max_turns: 10
  verification_gates:
    - name: has_score
      condition: "output.(("
stop_conditions:
  - condition_type: goal_met
    value: "a..b"
"""

EXPECTED_LINES = [
    "pattern: 'sequentail' is not allowed (did you mean 'sequential'?",
    "steps[0].promt_template: unknown key 'promt_template' (did you mean 'prompt_template'?",
    "steps[1].dependencies[0].step_name: unknown step 'plann' (steps: plan, build, review)",
    "steps[1].verification_gates[0]: unknown gate 'tests_pass' (gates in policy.verification_gates: has_score)",
    "steps[2].agent: unknown agent 'revieww' (agents: coder, reviewer)",
    "steps[2].prompt_template: placeholder {unknown_thing} cannot be filled",
    "policy.verification_gates[0].condition: invalid JMESPath 'output.(('",
    "stop_conditions[0].value: invalid JMESPath 'a..b'",
]


def test_every_mistake_is_reported_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(FIVE_MISTAKES, encoding="utf-8")
    result = loopengt("validate", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(EXPECTED_LINES), result.stdout
    for expected in EXPECTED_LINES:
        assert sum(line.startswith(expected) for line in lines) == 1, f"{expected!r} not in:\n{result.stdout}"
    assert f"{len(EXPECTED_LINES)} problems" in result.stderr


def test_load_spec_raises_one_error_with_every_problem() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(FIVE_MISTAKES, source="loop.yaml")
    assert len(caught.value.problems) == len(EXPECTED_LINES)
    assert str(caught.value).startswith("loop.yaml is not a valid loop spec: pattern: ")


# --- one class of mistake at a time -----------------------------------------------------------


def test_unknown_top_level_key_suggests_the_nearest() -> None:
    data = spec()
    data["stop_condition"] = []
    problem = only(data)
    assert problem.location == "stop_condition"
    assert problem.message.startswith("unknown key 'stop_condition' (did you mean 'stop_conditions'?")
    assert "allowed: " in problem.message
    assert "goal" in problem.message


def test_unknown_step_key_suggests_the_nearest() -> None:
    data = spec()
    data["steps"][1]["dependancies"] = data["steps"][1].pop("dependencies")
    problem = only(data)
    assert problem.location == "steps[1].dependancies"
    assert "unknown key 'dependancies' (did you mean 'dependencies'?" in problem.message


def test_unknown_policy_key_suggests_the_nearest() -> None:
    data = spec()
    data["policy"]["max_turn"] = data["policy"].pop("max_turns")
    data["policy"]["retry"]["max_retry"] = 3
    problems = problems_of(data)
    assert "unknown key 'max_turn' (did you mean 'max_turns'?" in at(problems, "policy.max_turn")
    assert "did you mean 'max_retries'?" in at(problems, "policy.retry.max_retry")


def test_unknown_key_without_a_near_match_lists_the_allowed_keys() -> None:
    data = spec()
    data["steps"][0]["zzzzzz"] = 1
    problem = only(data)
    assert problem.location == "steps[0].zzzzzz"
    assert "did you mean" not in problem.message
    assert "allowed: agent, allow_retry, dependencies" in problem.message


def test_unknown_agent() -> None:
    data = spec()
    data["steps"][2]["agent"] = "revieww"
    assert only(data) == Problem("steps[2].agent", "unknown agent 'revieww' (agents: coder, reviewer)")


def test_unknown_agent_when_none_are_defined() -> None:
    data = spec(agents=[])
    problems = problems_of(data)
    assert at(problems, "steps[0].agent") == "unknown agent 'coder' (no agents defined)"


def test_unknown_step_in_dependencies() -> None:
    data = spec()
    data["steps"][1]["dependencies"] = ["plan", "nope"]
    assert only(data) == Problem(
        "steps[1].dependencies[1].step_name", "unknown step 'nope' (steps: plan, build, review)"
    )


def test_unknown_gate() -> None:
    data = spec()
    data["steps"][2]["verification_gates"] = ["has_score", "tests_pass"]
    assert only(data) == Problem(
        "steps[2].verification_gates[1]",
        "unknown gate 'tests_pass' (gates in policy.verification_gates: has_score)",
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("agents", Problem("agents[2].name", "duplicate agent name 'coder' (first at agents[0])")),
        ("steps", Problem("steps[3].name", "duplicate step name 'plan' (first at steps[0])")),
        (
            "gates",
            Problem(
                "policy.verification_gates[1].name",
                "duplicate gate name 'has_score' (first at policy.verification_gates[0])",
            ),
        ),
    ],
)
def test_duplicate_names(where: str, expected: Problem) -> None:
    data = spec()
    if where == "agents":
        data["agents"].append({"name": "coder"})
    elif where == "steps":
        data["steps"].append({"name": "plan", "agent": "coder"})
    else:
        data["policy"]["verification_gates"].append({"name": "has_score", "condition": "output"})
    assert only(data) == expected


def test_dependency_cycle_names_the_cycle() -> None:
    data = spec()
    data["steps"][0]["dependencies"] = ["review"]
    data["steps"][2]["dependencies"] = ["build"]
    problem = only(data)
    assert problem.location.startswith("steps[")
    assert problem.location.endswith("].dependencies")
    assert problem.message.startswith("dependency cycle: ")
    chain = problem.message.removeprefix("dependency cycle: ").split(" -> ")
    assert chain[0] == chain[-1]
    assert sorted(chain[:-1]) == ["build", "plan", "review"]


def test_self_dependency_is_a_cycle() -> None:
    data = spec()
    data["steps"][1]["dependencies"] = ["build"]
    assert only(data) == Problem("steps[1].dependencies", "dependency cycle: build -> build")


def test_bad_jmespath_in_gate_condition() -> None:
    data = spec()
    data["policy"]["verification_gates"][0]["condition"] = "length(output.summary > `0`"
    problem = only(data)
    assert problem.location == "policy.verification_gates[0].condition"
    assert problem.message.startswith("invalid JMESPath 'length(output.summary > `0`'")
    assert "\n" not in problem.message


def test_bad_jmespath_in_goal_met() -> None:
    data = spec(stop_conditions=[{"condition_type": "goal_met", "value": "output.[done"}])
    problem = only(data)
    assert problem.location == "stop_conditions[0].value"
    assert problem.message.startswith("invalid JMESPath 'output.[done'")


def test_goal_met_needs_an_expression() -> None:
    data = spec(stop_conditions=[{"condition_type": "goal_met", "value": 3}])
    assert only(data) == Problem("stop_conditions[0].value", "expected a JMESPath expression (text), got 3")


def test_quality_threshold_needs_a_fraction() -> None:
    data = spec(stop_conditions=[{"condition_type": "quality_threshold", "value": 8}])
    problem = only(data)
    assert problem.location == "stop_conditions[0].value"
    assert "quality_threshold needs a number from 0 to 1, got 8" in problem.message


def test_invalid_output_schema() -> None:
    data = spec()
    data["steps"][0]["output_schema"] = {"type": "objekt"}
    data["agents"][1]["output_schema"] = {"type": "object", "required": "score"}
    problems = problems_of(data)
    assert len(problems) == 2
    assert at(problems, "steps[0].output_schema").startswith("not a valid JSON Schema: ")
    assert "(at type)" in at(problems, "steps[0].output_schema")
    assert "(at required)" in at(problems, "agents[1].output_schema")


def test_invalid_top_level_output_schema() -> None:
    data = spec(output_schema={"schema_def": {"type": 5}, "required_fields": ["summary"]})
    problem = only(data)
    assert problem.location == "output_schema.schema_def"
    assert problem.message.startswith("not a valid JSON Schema: ")


@pytest.mark.parametrize("meta", [5, [], {"a": 1}, True])
def test_output_schema_with_a_non_text_dollar_schema_is_a_problem_not_a_crash(meta: Any) -> None:
    data = spec()
    data["steps"][0]["output_schema"] = {"$schema": meta, "type": "object"}
    problem = only(data)
    assert problem.location == "steps[0].output_schema"
    assert "is not of type 'string' (at $schema)" in problem.message


def test_unfillable_placeholder() -> None:
    data = spec()
    data["steps"][1]["prompt_template"] = "Build it. Feedback: {feedbak}"
    problem = only(data)
    assert problem.location == "steps[1].prompt_template"
    assert problem.message.startswith("placeholder {feedbak} cannot be filled (did you mean 'feedback'?")
    assert "built-ins: goal, feedback, attempt" in problem.message


def test_unfillable_placeholder_in_a_system_prompt() -> None:
    data = spec()
    data["agents"][0]["system_prompt"] = "You work on {repo}."
    problem = only(data)
    assert problem.location == "agents[0].system_prompt"
    assert problem.message.startswith("placeholder {repo} cannot be filled")
    assert "context keys: none; inputs: none" in problem.message


def test_placeholder_naming_an_unknown_step() -> None:
    data = spec()
    data["steps"][2]["prompt_template"] = "Review {steps.biuld.output}"
    assert only(data) == Problem(
        "steps[2].prompt_template",
        "placeholder {steps.biuld.output}: use steps.<name>.output with a step name "
        "(steps: plan, build, review)",
    )


def test_fillable_placeholders_are_accepted() -> None:
    data = spec(
        context={"repository": "acme/app", "style": {"tabs": False}},
        inputs=[{"name": "ticket", "required": True}, {"name": "focus", "default": "all"}],
    )
    data["steps"][2]["prompt_template"] = (
        "{goal} {feedback} {attempt} {turn} {step} {agent} {run_id} {input} {context} "
        "{evaluation} {last_worker} {handoff} {repository} {style.tabs} {ticket} {focus} "
        '{steps.plan.output} {steps.build.output.summary} {{not a placeholder}} {"json": 1}'
    )
    data["agents"][1]["system_prompt"] = "You review {repository} for ticket {ticket}."
    loaded, problems = validate_data(data)
    assert problems == []
    assert loaded is not None


@pytest.mark.parametrize(
    ("path", "value", "where", "allowed"),
    [
        (("pattern",), "loop", "pattern", "sequential, parallel_fan_out, handoff"),
        (
            ("policy", "verification_gates", 0, "on_failure"),
            "retyr",
            "policy.verification_gates[0].on_failure",
            "retry, abort",
        ),
        (
            ("stop_conditions", 0, "condition_type"),
            "max_turn",
            "stop_conditions[0].condition_type",
            "max_turns, goal_met, quality_threshold, timeout, manual",
        ),
        (
            ("policy", "retry", "backoff"),
            "exponentail",
            "policy.retry.backoff",
            "none, fixed, linear, exponential",
        ),
    ],
)
def test_enum_values_list_the_allowed_ones(
    path: tuple[Any, ...], value: str, where: str, allowed: str
) -> None:
    data = spec()
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    problem = only(data)
    assert problem.location == where
    assert problem.message.startswith(f"'{value}' is not allowed (")
    assert f"allowed: {allowed}" in problem.message


def test_enum_value_suggests_the_nearest() -> None:
    problem = only(spec(pattern="evaluator_optimiser"))
    assert "did you mean 'evaluator_optimizer'?" in problem.message


def test_evaluator_optimizer_needs_two_agent_steps() -> None:
    data = spec(pattern="evaluator_optimizer", steps=[{"name": "review", "agent": "reviewer"}])
    problem = only(data)
    assert problem.location == "steps"
    assert problem.message.startswith("evaluator_optimizer needs exactly two agent steps")
    assert "found 1 agent steps of 1" in problem.message


def test_supervisor_worker_needs_workers() -> None:
    data = spec(pattern="supervisor_worker", steps=[{"name": "supervise", "agent": "coder"}])
    problem = only(data)
    assert problem.location == "steps"
    assert problem.message.startswith("supervisor_worker needs workers")


def test_supervisor_must_be_an_agent_step() -> None:
    data = spec(pattern="supervisor_worker", steps=[{"name": "supervise", "run": ["true"]}, BASE["steps"][0]])
    problem = only(data)
    assert problem.location == "steps[0]"
    assert "steps[0] is the supervisor and must be an agent step" in problem.message


def test_custom_transitions_must_name_known_steps() -> None:
    data = spec(
        pattern="custom",
        steps=[
            {
                "name": "triage",
                "agent": "coder",
                "next": "fixx",
                "on_failure": "escalate",
                "routes": {"field": "kind", "map": {"bug": "fix", "docs": "write_docs"}, "default": "triag"},
            },
            {"name": "fix", "agent": "coder"},
        ],
    )
    problems = problems_of(data)
    assert len(problems) == 4
    assert at(problems, "steps[0].next") == "unknown step 'fixx' (steps: triage, fix)"
    assert at(problems, "steps[0].on_failure") == "unknown step 'escalate' (steps: triage, fix)"
    assert at(problems, "steps[0].routes.map.docs") == "unknown step 'write_docs' (steps: triage, fix)"
    assert at(problems, "steps[0].routes.default") == "unknown step 'triag' (steps: triage, fix)"


def test_custom_transitions_to_known_steps_are_valid() -> None:
    data = spec(
        pattern="custom",
        steps=[
            {"name": "triage", "agent": "coder", "routes": {"field": "kind", "map": {"bug": "fix"}}},
            {"name": "fix", "agent": "coder", "next": ["test"], "on_failure": "triage"},
            {"name": "test", "run": "python -m pytest -q"},
        ],
    )
    loaded, problems = validate_data(data)
    assert problems == []
    assert loaded is not None
    assert loaded.steps[2].run == ["python", "-m", "pytest", "-q"]


@pytest.mark.parametrize("key", ["next", "on_failure"])
def test_transitions_on_a_non_custom_pattern(key: str) -> None:
    data = spec()
    data["steps"][0][key] = "build"
    assert only(data) == Problem(
        f"steps[0].{key}", f"'{key}' applies only to pattern 'custom' (pattern is 'sequential')"
    )


def test_routes_on_a_non_custom_pattern() -> None:
    data = spec(pattern="handoff")
    data["steps"][0]["routes"] = {"field": "kind", "map": {"x": "build"}}
    problem = only(data)
    assert problem.location == "steps[0].routes"
    assert "applies only to pattern 'custom' (pattern is 'handoff')" in problem.message


@pytest.mark.parametrize(
    "step",
    [
        {"name": "both", "agent": "coder", "run": ["pytest"]},
        {"name": "neither", "prompt_template": "hello"},
    ],
    ids=["both", "neither"],
)
def test_a_step_needs_exactly_one_of_agent_and_run(step: dict[str, Any]) -> None:
    data = spec()
    data["steps"].append(step)
    assert only(data) == Problem(
        "steps[3]", "a step needs exactly one of 'agent' (a task for an agent) or 'run' (a command)"
    )


def test_a_gate_needs_exactly_one_kind() -> None:
    data = spec()
    data["policy"]["verification_gates"][0]["command"] = ["pytest"]
    problem = only(data)
    assert problem.location == "policy.verification_gates[0]"
    assert (
        "exactly one of 'condition', 'command', 'approval: true', 'loop_spec' or 'judge' (has condition, command)"
        in problem.message
    )


def test_missing_required_fields() -> None:
    data = spec()
    del data["name"]
    data["steps"][0].pop("name")
    problems = problems_of(data)
    assert at(problems, "name") == "required, but missing"
    assert at(problems, "steps[0].name") == "required, but missing"


def test_wrong_types_name_the_value() -> None:
    data = spec()
    data["policy"]["max_turns"] = "many"
    data["policy"]["allow_parallel"] = "sometimes"
    problems = problems_of(data)
    assert "(got 'many')" in at(problems, "policy.max_turns")
    assert "(got 'sometimes')" in at(problems, "policy.allow_parallel")


# --- the command's edges ------------------------------------------------------------------------


def _clean_failure(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    return output


def test_cli_missing_file(tmp_path: Path) -> None:
    output = _clean_failure(loopengt("validate", str(tmp_path / "nope.yaml")))
    assert "nope.yaml: no such file" in output


def test_cli_directory(tmp_path: Path) -> None:
    output = _clean_failure(loopengt("validate", str(tmp_path)))
    assert "is a directory" in output


def test_cli_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: x\nsteps:\n  - name: [a\n    agent: b\n", encoding="utf-8")
    output = _clean_failure(loopengt("validate", str(path)))
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert "invalid YAML" in lines[0]
    assert "line 4, column " in lines[0] or "line 3, column " in lines[0]


def test_cli_forbidden_character_is_one_line_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: x\ngoal: a\x00b\n", encoding="utf-8")
    output = _clean_failure(loopengt("validate", str(path)))
    assert output.strip().splitlines() == [
        f"{path}: line 2, column 8: invalid YAML: character U+0000 is not allowed"
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- name: a\n- name: b\n", "list"), ("", "empty"), ("# only a comment\n", "empty"), ("42\n", "int")],
    ids=["list", "empty", "comment", "scalar"],
)
def test_cli_document_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    output = _clean_failure(loopengt("validate", str(path)))
    assert f"(document): a loop spec is a mapping (name, goal, steps, ...), not {kind}" in output


def test_text_and_data_give_the_same_problems() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec("pattern: loop\n")
    _, problems = validate_data({"pattern": "loop"})
    assert caught.value.problems == problems
    assert {p.location for p in problems} == {"name", "steps", "pattern"}


def test_budget_and_stuck_fields_are_checked_with_their_locations() -> None:
    from loopengt_core.engine.validation import validate_data

    data = {
        "name": "b",
        "agents": [{"name": "a"}],
        "steps": [{"name": "s", "agent": "a"}, {"name": "c", "run": ["true"]}],
        "policy": {
            "budget": {"mode": "enforce", "max_tokens": 0, "steps": {"nope": {"max_tokens": 5}, "c": {}}},
            "stuck": {"after": 1, "same_outptu": True},
        },
    }
    _spec, problems = validate_data(data)
    text = "\n".join(str(p) for p in problems)
    assert "policy.budget.max_tokens" in text
    assert "policy.stuck.after" in text
    assert "policy.stuck.same_outptu" in text
    data["policy"]["budget"]["max_tokens"] = 10  # type: ignore[index]
    data["policy"]["stuck"] = {}  # type: ignore[index]
    _spec, problems = validate_data(data)
    text = "\n".join(str(p) for p in problems)
    assert "policy.budget.steps.nope: unknown step 'nope' (steps: s, c)" in text
    assert "policy.budget.steps.c: step 'c' is a command step" in text
