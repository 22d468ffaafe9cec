"""Conditions: JMESPath and 0.1.0's Python-style expressions, the rule that tells them apart, the sandbox.

The end of the file drives tests/fixtures/conditions_0_1_0.yaml (a 0.1.0-format spec with every
condition form: JMESPath and Python-style gate conditions, max_turns, goal_met, custom and
quality_threshold stop conditions) through the runs service to each way it can complete and fail.
"""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from clock import Clock

from loopengt_core.engine import Engine
from loopengt_core.engine.gates import condition_gate
from loopengt_core.engine.validation import Problem, SpecError, load_spec, validate_data
from loopengt_core.model.events import event_data
from loopengt_core.model.expressions import (
    GATE_NAMES,
    STOP_NAMES,
    ConditionFailed,
    ExpressionError,
    compile_condition,
)
from loopengt_core.model.spec import LoopSpec
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

FIXTURE = Path(__file__).parent / "fixtures" / "conditions_0_1_0.yaml"

SCOPE: dict[str, Any] = {
    "output": {
        "summary": "validated the email field",
        "score": 0.85,
        "approved": True,
        "log": "3 passed",
        "tests": [{"name": "a", "ok": True}, {"name": "b", "ok": True}],
        "items": ["x"],
        "count": 0,
    },
    "context": {"repository": "acme/signup"},
    "steps": {"plan": {"output": {"summary": "plan"}, "status": "completed"}},
    "attempt": 2,
}


def holds(text: str, scope: dict[str, Any] = SCOPE, names: tuple[str, ...] = GATE_NAMES) -> bool:
    return compile_condition(text, names).holds(scope)


# --- which dialect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "dialect"),
    [
        # JMESPath: compiles, JMESPath functions only, reads only the scope's names.
        ("output.score != null", "jmespath"),  # 0.1.0 sample; `null` reads a missing field, as ever
        ("length(output.summary) > `0`", "jmespath"),
        ("output.done == `true`", "jmespath"),
        ("output.summary", "jmespath"),
        ("steps.plan.output.summary", "jmespath"),
        ("output.tests[?ok == `false`] | length(@) == `0`", "jmespath"),
        ("true", "jmespath"),  # 0.1.0's generated goal_met: a field lookup, never met (DESIGN)
        # Python-style: everything else the sandbox accepts.
        ("len(output['summary']) > 0", "python"),
        ("output['score'] >= 0.8 and output.get('approved')", "python"),
        ("'error' not in output['log']", "python"),
        ("output.passed == True", "python"),  # JMESPath would read `True` as a missing field
        ("len(output.summary) > 0", "python"),
        ("all(t['ok'] for t in output['tests'])", "python"),
        ("attempt > 1", "python"),
        ("not output['approved']", "python"),
    ],
)
def test_the_dialect_is_decided_by_the_text(text: str, dialect: str) -> None:
    assert compile_condition(text, GATE_NAMES).dialect == dialect


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len(output['summary']) > 0", True),
        ("output['score'] >= 0.8 and output.get('approved')", True),
        ("output['score'] >= 0.9 and output.get('approved')", False),
        ("'error' not in output['log']", True),
        ("'passed' in output['log']", True),
        ("output.get('missing') is None", True),
        ("output.get('missing', 3) > 2", True),
        ("all(t['ok'] for t in output['tests'])", True),
        ("any(t['name'] == 'c' for t in output['tests'])", False),
        ("len([t for t in output['tests'] if t['ok']]) == 2", True),
        ("output.summary.startswith('validated')", True),
        ("output['summary'].upper().split()[0] == 'VALIDATED'", True),
        ("max(1, 2, 3) == 3 and min([4, 5]) == 4 and abs(-1) == 1 and sum([1, 2]) == 3", True),
        ("round(output['score'], 1) == 0.8 or round(output['score'], 1) == 0.9", True),
        ("int('7') + float('0.5') == 7.5 and str(1) == '1' and bool(1)", True),
        ("sorted(output['items'] + ['a'])[0] == 'a'", True),
        ("steps['plan']['output']['summary'] == 'plan'", True),
        ("context['repository'].endswith('signup')", True),
        ("attempt == 2", True),
        ("'yes' if output['approved'] else ''", True),
        ("output['count']", False),  # Python truthiness: 0 is false
        ("output.count", True),  # JMESPath truthiness: 0 is true
        ("output['items'][-1] == 'x' and output['summary'][:9] == 'validated'", True),
    ],
)
def test_python_style_conditions_evaluate(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("output['nope'] > 1", "no key 'nope'"),
        ("output.nope > 1", "no key 'nope'"),
        ("output['tests'][5]", "list index out of range"),
        ("len(output['score']) > 0", "TypeError: object of type 'float' has no len()"),
        ("output['score'] / 0", "ZeroDivisionError"),
        ("output['summary'].get('x')", "'.get' is not available on a string"),
    ],
)
def test_a_python_style_condition_that_fails_on_the_data_says_why(text: str, message: str) -> None:
    with pytest.raises(ConditionFailed, match=message):
        holds(text)


def test_stop_conditions_have_no_attempt() -> None:
    with pytest.raises(ExpressionError, match="'attempt' is not a name here"):
        compile_condition("attempt > 1", STOP_NAMES)
    assert compile_condition("attempt > 1", GATE_NAMES).dialect == "python"


# --- the sandbox --------------------------------------------------------------------------------

REFUSED = [
    ("__import__('os').system('touch pwned')", "'__import__' is not allowed"),
    ("open('/etc/passwd').read()", "'open' is not a function here"),
    ("output.__class__.__mro__[1] is not None", "'__mro__' is not allowed (no name or attribute may start"),
    (
        "().__class__.__bases__[0].__subclasses__()",
        "is not allowed (no name or attribute may start with '_')",
    ),
    ("output['summary'].__len__() > 0", "'__len__' is not allowed"),
    ("(lambda: 1)()", "only named functions and methods can be called"),
    ("eval('1')", "'eval' is not a function here"),
    ("exec('x = 1')", "'exec' is not a function here"),
    ("getattr(output, 'summary')", "'getattr' is not a function here"),
    ("vars(output)", "'vars' is not a function here"),
    ("globals()", "'globals' is not a function here"),
    ("'{0.__class__}'.format(output)", "method 'format()' is not allowed"),
    ("'{}'.format(output)", "method 'format()' is not allowed"),
    ("output['summary'].join(['a', 'b'])", "method 'join()' is not allowed"),
    ("f'{output}' == ''", "f-strings cannot be used"),
    ("9 ** 9 ** 9", "`**` cannot be used"),
    ("(x := 1)", "`:=` cannot be used"),
    ("len(output) > 0 and secrets", "'secrets' is not a name here"),
    ("{**output}", "`**` in a dict cannot be used"),
    ("len(**output)", "`**` arguments cannot be used"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_the_sandbox_refuses_at_validation_with_the_location(text: str, reason: str) -> None:
    data = _small_spec(gate_condition=text)
    spec, problems = validate_data(data)
    assert spec is None
    assert [p.location for p in problems] == ["policy.verification_gates[0].condition"]
    assert reason in problems[0].message
    assert "\n" not in problems[0].message


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_a_refused_condition_never_runs_even_if_validation_was_skipped(
    text: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = LoopSpec.model_validate(_small_spec(gate_condition=text))  # no semantic checks
    result = condition_gate("g", spec.policy.verification_gates[0].condition or "", SCOPE, None)
    assert result.passed is False
    assert result.feedback is not None
    assert reason in result.feedback
    assert list(tmp_path.iterdir()) == []


def test_a_jmespath_field_named_like_a_python_internal_is_only_data() -> None:
    assert compile_condition("output.__class__", GATE_NAMES).dialect == "jmespath"
    assert holds("output.__class__") is False
    assert holds("output.__class__", {**SCOPE, "output": {"__class__": "x"}}) is True
    assert (
        compile_condition("type(output) == 'object'", GATE_NAMES).dialect == "jmespath"
    )  # JMESPath's type()


def test_no_condition_uses_python_eval_or_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    compile_condition.cache_clear()
    assert holds("len(output['summary']) > 0 and all(t['ok'] for t in output['tests'])")
    assert holds("output.score != null")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[output] * 200000", "a value longer than 100000"),
        ("output['summary'] * 100000", "a value longer than 100000"),
        ("len(str([output['big'] for x in output['big']])) > 0", "too many elements"),
        ("len(str([output['big']] * 50000)) > 0", "works on too much data"),
        ("len(sum([[output['big']]] * 50000, [])) > 0", "works on too much data"),
        ("sorted([output['big']] * 50000)", "works on too much data"),
        ("'%0999999999d' % 1", "`%` formatting is not available"),
        ("[[x for x in output['big']] for y in output['big']]", "too many elements"),
    ],
)
def test_limits_stop_expensive_conditions_quickly(text: str, message: str) -> None:
    scope = {**SCOPE, "output": {**SCOPE["output"], "big": list(range(50_000))}}
    started = time.monotonic()
    with pytest.raises(ConditionFailed, match=message):
        compile_condition(text, GATE_NAMES).holds(scope)
    assert time.monotonic() - started < 10  # in practice well under a second


# --- validation: locations and messages ---------------------------------------------------------


def _small_spec(
    gate_condition: str = "output.ok", stop: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "name": "small",
        "agents": [{"name": "a"}],
        "steps": [{"name": "s", "agent": "a", "verification_gates": ["g"]}],
        "policy": {"verification_gates": [{"name": "g", "condition": gate_condition}]},
        "stop_conditions": stop or [],
    }


def test_unparseable_in_both_dialects_names_both() -> None:
    _, problems = validate_data(_small_spec(gate_condition="len(output.summary) > `0`"))
    assert problems == [
        Problem(
            "policy.verification_gates[0].condition",
            "invalid JMESPath 'len(output.summary) > `0`': unknown function len(); "
            "not a Python-style expression either: invalid syntax at column 23",
        )
    ]


def test_a_jmespath_function_with_the_wrong_arguments_is_a_validation_error() -> None:
    _, problems = validate_data(_small_spec(gate_condition="length(output.summary, `1`) > `0`"))
    assert [p.location for p in problems] == ["policy.verification_gates[0].condition"]
    assert "length() takes 1 argument, got 2" in problems[0].message


def test_custom_stop_condition_is_checked_like_goal_met() -> None:
    stop = [
        {"condition_type": "custom", "value": "output.get('done') and len(output['summary']) > 0"},
        {"condition_type": "custom", "value": "open('x')"},
        {"condition_type": "goal_met", "value": "output.__dict__ == 1"},
        {"condition_type": "custom"},
        {"condition_type": "custom", "expression": "output['x'] =="},
        {"condition_type": "goal_met", "expression": "output.done", "value": "output.done"},
        {"condition_type": "max_turns", "value": 3, "expression": "output.done"},
        {"condition_type": "custom", "expression": "output['done'] == True"},
    ]
    _, problems = validate_data(_small_spec(stop=stop))
    where = [p.location for p in problems]
    assert where == [
        "stop_conditions[1].value",
        "stop_conditions[2].value",
        "stop_conditions[3].value",
        "stop_conditions[4].expression",
        "stop_conditions[5]",
        "stop_conditions[6].expression",
    ]
    messages = [p.message for p in problems]
    assert "'open' is not a function here" in messages[0]
    assert "'__dict__' is not allowed" in messages[1]
    assert messages[2] == "expected a JMESPath expression (text), got None"
    assert messages[3].startswith("invalid JMESPath \"output['x'] ==\"")
    assert messages[4] == "goal_met: give the expression once, in 'value' or in 'expression'"
    assert messages[5] == "only goal_met and custom take an expression (this is max_turns)"


def test_templates_and_the_fixture_keep_their_dialects() -> None:
    from loopengt_core.service.catalog import template_names, template_text

    found: dict[str, str] = {}
    for name in template_names():
        spec = load_spec(template_text(name))
        for gate in spec.policy.verification_gates:
            if gate.condition is not None:
                found[gate.condition] = compile_condition(gate.condition, GATE_NAMES).dialect
        for cond in spec.stop_conditions:
            if cond.condition_type in ("goal_met", "custom"):
                found[cond.condition()] = compile_condition(cond.condition(), STOP_NAMES).dialect
    assert found
    assert set(found.values()) == {"jmespath"}, found


# --- a 0.1.0 spec with every condition form, driven through the runs service ---------------------


@pytest.fixture
def runs(tmp_path: Path) -> Runs:
    return Runs(FileStore(tmp_path / "store"), clock=Clock(), cwd=tmp_path)


def _start(runs: Runs) -> str:
    return runs.start_run(spec_path=str(FIXTURE)).run_id


def _verdicts(answer: Any) -> list[tuple[str, bool, str | None]]:
    return [(g.name, g.passed, g.feedback) for g in answer.gate_results]


def _end_reason(runs: Runs, run_id: str) -> str:
    last = runs.trace(run_id)[-1]
    assert last.type in ("run_completed", "run_failed"), last.type
    return str(event_data(last)["reason"])


def _open(answer: Any) -> list[str]:
    return [t.task_id for t in answer.tasks]


def test_the_fixture_is_a_valid_0_1_0_spec_with_each_condition_form() -> None:
    spec = load_spec(FIXTURE.read_text("utf-8"))
    dialects = {g.name: compile_condition(g.condition or "").dialect for g in spec.policy.verification_gates}
    assert dialects == {
        "has_score": "jmespath",
        "has_summary": "python",
        "clean_log": "python",
        "score_in_range": "python",
    }
    assert [c.condition_type for c in spec.stop_conditions] == [
        "max_turns",
        "goal_met",
        "custom",
        "quality_threshold",
    ]
    raw = yaml.safe_load(FIXTURE.read_text("utf-8"))
    assert set(raw) <= {"name", "version", "description", "goal", "pattern", "agents", "steps"} | {
        "policy",
        "stop_conditions",
    }


def _through_review(runs: Runs, review: dict[str, Any]) -> tuple[str, Any]:
    run_id = _start(runs)
    answer = runs.step(run_id, "plan#1", {"summary": "check the email"})
    assert _verdicts(answer) == [("has_summary", True, None)]
    answer = runs.step(run_id, "implement#1", {"summary": "added a validator", "log": "12 passed"})
    assert _verdicts(answer) == [("has_summary", True, None), ("clean_log", True, None)]
    answer = runs.step(run_id, "review#1", review)
    return run_id, answer


def test_custom_stop_condition_completes_the_run(runs: Runs) -> None:
    run_id, answer = _through_review(runs, {"score": 0.92, "approved": True})
    assert _verdicts(answer) == [("has_score", True, None), ("score_in_range", True, None)]
    assert answer.status == "completed"
    assert answer.final_output == {"score": 0.92, "approved": True}
    assert _end_reason(runs, run_id) == "custom: output.get('approved') and output['score'] >= 0.9"
    assert {s.name: s.status for s in answer.steps}["polish"] == "skipped"


def test_quality_threshold_completes_the_run(runs: Runs) -> None:
    run_id, answer = _through_review(runs, {"score": 0.96, "approved": False})
    assert answer.status == "completed"
    assert _end_reason(runs, run_id) == "quality_threshold 0.95 reached (score 0.96)"


def test_goal_met_completes_the_run(runs: Runs) -> None:
    run_id = _start(runs)
    runs.step(run_id, "plan#1", {"summary": "check the email"})
    answer = runs.step(run_id, "implement#1", {"summary": "done", "log": "ok", "shipped": True})
    assert _verdicts(answer) == [("has_summary", True, None), ("clean_log", True, None)]
    assert answer.status == "completed"
    assert _end_reason(runs, run_id) == "goal_met: output.shipped == `true`"


def test_no_stop_condition_met_runs_every_step(runs: Runs) -> None:
    run_id, answer = _through_review(runs, {"score": 0.5, "approved": True})
    assert answer.status == "running"
    assert _open(answer) == ["polish#1"]
    answer = runs.step(run_id, "polish#1", "polished")  # a text output: the Python-style stop is not met
    assert answer.status == "completed"
    assert _end_reason(runs, run_id) == "all steps completed"


def test_gates_fail_with_feedback_and_max_turns_fails_the_run(runs: Runs) -> None:
    run_id = _start(runs)
    answer = runs.step(run_id, "plan#1", {"summary": ""})
    assert _verdicts(answer) == [("has_summary", False, "give a non-empty summary")]
    assert _open(answer) == ["plan#2"]
    answer = runs.step(run_id, "plan#2", {"summary": "ok"})
    answer = runs.step(run_id, "implement#1", {"summary": "x", "log": "1 error"})
    assert _verdicts(answer) == [
        ("has_summary", True, None),
        ("clean_log", False, "gate 'clean_log' failed: `'error' not in output['log']` is false"),
    ]
    answer = runs.step(run_id, "implement#2", {"summary": "x"})
    assert _verdicts(answer) == [
        ("has_summary", True, None),
        ("clean_log", False, "gate 'clean_log': `'error' not in output['log']` failed: no key 'log'"),
    ]
    assert answer.tasks[0].feedback == (
        "gate 'clean_log': `'error' not in output['log']` failed: no key 'log'"
    )
    answer = runs.step(run_id, "implement#3", {"summary": "x", "log": "fine"})
    answer = runs.step(run_id, "review#1", {"score": 1.5, "comments": "no score"})
    assert _verdicts(answer) == [
        ("has_score", True, None),
        ("score_in_range", False, "gate 'score_in_range' failed: `0 <= output['score'] <= 1` is false"),
    ]
    assert answer.status == "failed"
    assert answer.error == "max_turns 6 reached before step 'review' passed"
    assert _end_reason(runs, run_id) == answer.error


def test_the_jmespath_gate_fails_when_the_field_is_missing(runs: Runs) -> None:
    run_id, answer = _through_review(runs, {"comments": "forgot the score"})
    assert _verdicts(answer) == [
        ("has_score", False, "gate 'has_score' failed: `output.score != null` is false"),
        (
            "score_in_range",
            False,
            "gate 'score_in_range': `0 <= output['score'] <= 1` failed: no key 'score'",
        ),
    ]
    assert _open(answer) == ["review#2"]
    answer = runs.step(run_id, "review#2", {"score": 0.97, "approved": True})
    assert answer.status == "completed"
    assert _end_reason(runs, run_id).startswith("custom: ")


def test_an_engine_reads_custom_and_goal_met_in_order() -> None:
    spec = load_spec(FIXTURE.read_text("utf-8"))
    assert Engine(spec).goals == [
        ("goal_met", "output.shipped == `true`"),
        ("custom", "output.get('approved') and output['score'] >= 0.9"),
    ]


def test_load_spec_raises_with_every_bad_condition() -> None:
    data = _small_spec(
        gate_condition="open('x')", stop=[{"condition_type": "custom", "value": "__import__('os')"}]
    )
    with pytest.raises(SpecError) as info:
        load_spec(data)
    assert [p.location for p in info.value.problems] == [
        "policy.verification_gates[0].condition",
        "stop_conditions[0].value",
    ]
