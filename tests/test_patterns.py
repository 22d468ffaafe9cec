"""Every pattern driven through the runs service on a real file store: to `completed` and to `failed`.

Each test asserts the exact task ids issued, the feedback and `input` a task carries, and the reason a
run ended with. Gates (condition, schema, command, approval), deadlines, budgets and cancellation are
covered at the end. Time comes from a fake clock the tests advance; commands are real subprocesses.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clock import Clock

from loopengt_core.engine.view import RunView, TaskView
from loopengt_core.model.errors import Conflict, NotFound
from loopengt_core.model.events import event_data
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs(tmp_path: Path, clock: Clock) -> Runs:
    return Runs(FileStore(tmp_path / "store"), clock=clock, cwd=tmp_path, allow_inline_commands=True)


def spec(pattern: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    agents = sorted({s["agent"] for s in steps if "agent" in s})
    out: dict[str, Any] = {
        "name": f"{pattern.replace('_', '-')}-test",
        "goal": "exercise the engine",
        "pattern": pattern,
        "agents": [{"name": a} for a in agents],
        "steps": steps,
    }
    out.update(extra)
    return out


def issued(runs: Runs, run_id: str) -> list[str]:
    """Every agent task and command run issued, in order."""
    return [
        event_data(e)["task_id"]
        for e in runs.trace(run_id)
        if e.type == "task_issued" or (e.type == "command_requested" and event_data(e)["kind"] == "step")
    ]


def end_reason(runs: Runs, run_id: str) -> str:
    last = runs.trace(run_id)[-1]
    assert last.type in ("run_completed", "run_failed", "run_cancelled"), last.type
    return str(event_data(last)["reason"])


def only(view: RunView) -> TaskView:
    assert len(view.tasks) == 1, [t.task_id for t in view.tasks]
    return view.tasks[0]


def task(view: RunView, task_id: str) -> TaskView:
    found = [t for t in view.tasks if t.task_id == task_id]
    assert found, f"{task_id} not open; open: {[t.task_id for t in view.tasks]}"
    return found[0]


def statuses(view: RunView) -> dict[str, str]:
    return {s.name: s.status for s in view.steps}


def event_count(runs: Runs, run_id: str) -> int:
    return len(runs.trace(run_id))


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --- sequential -----------------------------------------------------------------------------------


def test_sequential_completes_in_dependency_order(runs: Runs) -> None:
    s = spec(
        "sequential",
        [
            {"name": "execute", "agent": "coder", "dependencies": [{"step_name": "plan"}]},
            {"name": "plan", "agent": "planner"},
        ],
    )
    view = runs.start_run(spec=s)
    assert only(view).task_id == "plan#1"
    assert only(view).attempt == 1
    view = runs.step(view.run_id, "plan#1", {"plan": ["a", "b"]})
    execute = only(view)
    assert execute.task_id == "execute#1"
    assert execute.input["previous"] == {"step": "plan", "output": {"plan": ["a", "b"]}}
    view = runs.step(view.run_id, "execute#1", {"done": True})
    assert view.status == "completed"
    assert view.final_output == {"done": True}
    assert view.turn == 2
    assert issued(runs, view.run_id) == ["plan#1", "execute#1"]
    assert end_reason(runs, view.run_id) == "all steps completed"
    assert [(s.name, s.status, s.attempts) for s in view.steps] == [
        ("execute", "completed", 1),
        ("plan", "completed", 1),
    ]


def test_sequential_fails_at_max_turns_with_the_gate_feedback_on_each_retry(runs: Runs) -> None:
    s = spec(
        "sequential",
        [
            {"name": "plan", "agent": "planner"},
            {"name": "review", "agent": "reviewer", "verification_gates": ["approved"]},
        ],
        policy={
            "max_turns": 3,
            "retry": {"max_retries": 5},
            "verification_gates": [
                {"name": "approved", "condition": "output.ok == `true`", "feedback": "say ok: true"}
            ],
        },
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "plan#1", "a plan")
    answer = runs.step(view.run_id, "review#1", {"ok": False})
    assert answer.accepted is True
    assert [(g.name, g.passed, g.feedback) for g in answer.gate_results] == [
        ("approved", False, "say ok: true")
    ]
    retry = only(answer)
    assert (retry.task_id, retry.attempt, retry.feedback) == ("review#2", 2, "say ok: true")
    assert "say ok: true" in retry.instructions
    view = runs.step(view.run_id, "review#2", {"ok": False})
    assert view.status == "failed"
    assert view.error == "max_turns 3 reached before step 'review' passed"
    assert view.tasks == []
    assert issued(runs, view.run_id) == ["plan#1", "review#1", "review#2", "review#3"]
    assert statuses(view) == {"plan": "completed", "review": "failed"}


def test_sequential_fails_when_retries_run_out(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "x", "agent": "a"}, {"name": "y", "agent": "a"}],
        policy={"retry": {"max_retries": 1}},
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "x#1", None, outcome="failure", error="disk full")
    retry = only(view)
    assert (retry.task_id, retry.attempt) == ("x#2", 2)
    assert retry.feedback == "attempt 1 reported failure: disk full"
    view = runs.step(view.run_id, "x#2", None, outcome="failure", error="still full")
    assert view.status == "failed"
    assert view.error == "step 'x' failed after 2 attempts: attempt 2 reported failure: still full"
    assert end_reason(runs, view.run_id) == view.error
    assert issued(runs, view.run_id) == ["x#1", "x#2"]
    assert statuses(view) == {"x": "failed", "y": "skipped"}


def test_allow_retry_false_fails_at_once(runs: Runs) -> None:
    s = spec("sequential", [{"name": "x", "agent": "a", "allow_retry": False}])
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "x#1", None, outcome="failure", error="no")
    assert view.status == "failed"
    assert view.error == "step 'x' failed after 1 attempt: attempt 1 reported failure: no"


# --- parallel_fan_out -----------------------------------------------------------------------------

FAN: list[dict[str, Any]] = [
    {"name": "a", "agent": "w"},
    {"name": "b", "agent": "w"},
    {"name": "c", "agent": "w"},
    {"name": "join", "agent": "w", "dependencies": ["a", "b", "c"]},
]


def test_parallel_fan_out_issues_ready_steps_up_to_max_concurrency_and_joins(runs: Runs) -> None:
    view = runs.start_run(spec=spec("parallel_fan_out", FAN, policy={"max_concurrency": 2}))
    assert [t.task_id for t in view.tasks] == ["a#1", "b#1"]
    view = runs.step(view.run_id, "b#1", "B")
    assert [t.task_id for t in view.tasks] == ["a#1", "c#1"]
    view = runs.step(view.run_id, "c#1", "C")
    assert [t.task_id for t in view.tasks] == ["a#1"]  # the join waits for a
    assert statuses(view)["join"] == "pending"
    view = runs.step(view.run_id, "a#1", "A")
    join = only(view)
    assert join.task_id == "join#1"
    assert join.input["dependencies"] == {"a": "A", "b": "B", "c": "C"}
    view = runs.step(view.run_id, "join#1", {"merged": True})
    assert view.status == "completed"
    assert view.final_output == {"merged": True}
    assert issued(runs, view.run_id) == ["a#1", "b#1", "c#1", "join#1"]
    assert end_reason(runs, view.run_id) == "all branches completed"


def test_parallel_fan_out_issues_all_ready_steps_at_once(runs: Runs) -> None:
    view = runs.start_run(spec=spec("parallel_fan_out", FAN))
    assert [t.task_id for t in view.tasks] == ["a#1", "b#1", "c#1"]


def test_parallel_fan_out_fail_fast_ends_the_run_at_once(runs: Runs) -> None:
    view = runs.start_run(spec=spec("parallel_fan_out", FAN, policy={"retry": {"max_retries": 1}}))
    view = runs.step(view.run_id, "a#1", None, outcome="failure", error="e1")
    assert [t.task_id for t in view.tasks] == ["b#1", "c#1", "a#2"]
    assert task(view, "a#2").feedback == "attempt 1 reported failure: e1"
    view = runs.step(view.run_id, "a#2", None, outcome="failure", error="e2")
    assert view.status == "failed"
    assert view.error == "step 'a' failed after 2 attempts: attempt 2 reported failure: e2"
    assert view.tasks == []
    assert issued(runs, view.run_id) == ["a#1", "b#1", "c#1", "a#2"]
    assert statuses(view)["a"] == "failed"
    assert statuses(view)["join"] == "skipped"  # never reached (b and c were cut off while open)
    with pytest.raises(Conflict, match="has ended"):
        runs.step(view.run_id, "b#1", "B")


def test_parallel_fan_out_without_fail_fast_lets_issued_branches_finish(runs: Runs) -> None:
    s = spec("parallel_fan_out", FAN, policy={"fail_fast": False, "retry": {"max_retries": 0}})
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "a#1", None, outcome="failure", error="broken")
    assert view.status == "running"
    assert [t.task_id for t in view.tasks] == ["b#1", "c#1"]
    view = runs.step(view.run_id, "b#1", "B")
    assert view.status == "running"
    view = runs.step(view.run_id, "c#1", "C")
    assert view.status == "failed"
    assert view.error == "step 'a' failed after 1 attempt: attempt 1 reported failure: broken"
    assert issued(runs, view.run_id) == ["a#1", "b#1", "c#1"]  # the join never started
    assert statuses(view) == {"a": "failed", "b": "completed", "c": "completed", "join": "skipped"}


def test_parallel_fan_out_fails_at_max_turns(runs: Runs) -> None:
    s = spec(
        "parallel_fan_out",
        FAN[:2],
        policy={
            "max_turns": 2,
            "verification_gates": [{"name": "nonempty", "condition": "length(output) > `0`"}],
        },
    )
    s["steps"] = [dict(st, verification_gates=["nonempty"]) for st in s["steps"]]
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "a#1", "")
    assert task(view, "a#2").feedback == "gate 'nonempty' failed: `length(output) > `0`` is false"
    view = runs.step(view.run_id, "b#1", "")
    assert view.status == "failed"
    assert view.error == "max_turns 2 reached before steps 'a', 'b' passed"
    assert issued(runs, view.run_id) == ["a#1", "b#1", "a#2", "b#2"]


# --- handoff --------------------------------------------------------------------------------------

HANDOFF: list[dict[str, Any]] = [
    {"name": "triage", "agent": "triager"},
    {"name": "fix", "agent": "coder"},
    {"name": "review", "agent": "reviewer"},
]


def test_handoff_passes_the_previous_output_and_agent(runs: Runs) -> None:
    view = runs.start_run(spec=spec("handoff", HANDOFF))
    assert "handoff" not in only(view).input
    view = runs.step(view.run_id, "triage#1", {"bug": "off by one"})
    fix = only(view)
    assert fix.task_id == "fix#1"
    assert fix.input["handoff"] == {
        "from_step": "triage",
        "agent": "triager",
        "output": {"bug": "off by one"},
    }
    view = runs.step(view.run_id, "fix#1", {"patch": "+1"})
    assert only(view).input["handoff"] == {"from_step": "fix", "agent": "coder", "output": {"patch": "+1"}}
    view = runs.step(view.run_id, "review#1", {"lgtm": True})
    assert view.status == "completed"
    assert view.final_output == {"lgtm": True}
    assert issued(runs, view.run_id) == ["triage#1", "fix#1", "review#1"]
    assert end_reason(runs, view.run_id) == "all steps completed"


def test_handoff_to_picks_the_next_step(runs: Runs) -> None:
    view = runs.start_run(spec=spec("handoff", HANDOFF))
    view = runs.step(view.run_id, "triage#1", {"handoff_to": "review", "note": "trivial"})
    review = only(view)
    assert review.task_id == "review#1"
    assert review.input["handoff"]["output"] == {"handoff_to": "review", "note": "trivial"}
    view = runs.step(view.run_id, "review#1", {"ok": True})
    assert view.status == "completed"
    assert issued(runs, view.run_id) == ["triage#1", "review#1"]
    assert statuses(view) == {"triage": "completed", "fix": "skipped", "review": "completed"}


def test_handoff_to_an_unknown_step_is_a_failed_gate(runs: Runs) -> None:
    view = runs.start_run(spec=spec("handoff", HANDOFF))
    answer = runs.step(view.run_id, "triage#1", {"handoff_to": "nobody"})
    assert [(g.name, g.passed) for g in answer.gate_results] == [("handoff_to", False)]
    retry = only(answer)
    assert retry.task_id == "triage#2"
    assert retry.feedback == "handoff_to 'nobody' is not a step (triage, fix, review)"


def test_handoff_fails_at_max_turns_when_the_agents_keep_handing_back(runs: Runs) -> None:
    view = runs.start_run(spec=spec("handoff", HANDOFF, policy={"max_turns": 4}))
    run_id = view.run_id
    runs.step(run_id, "triage#1", {"bug": 1})
    runs.step(run_id, "fix#1", {"patch": 1})
    view = runs.step(run_id, "review#1", {"handoff_to": "fix", "why": "wrong patch"})
    fix = only(view)
    assert (fix.task_id, fix.attempt) == ("fix#2", 1)  # a second visit, not a retry
    assert fix.input["handoff"] == {
        "from_step": "review",
        "agent": "reviewer",
        "output": {"handoff_to": "fix", "why": "wrong patch"},
    }
    view = runs.step(run_id, "fix#2", {"patch": 2})
    assert view.status == "failed"
    assert view.error == "max_turns 4 reached before step 'review' passed"
    assert issued(runs, run_id) == ["triage#1", "fix#1", "review#1", "fix#2", "review#2"]


# --- supervisor_worker ----------------------------------------------------------------------------

SUPERVISED: list[dict[str, Any]] = [
    {"name": "boss", "agent": "lead"},
    {"name": "code", "agent": "coder"},
    {"name": "test", "agent": "tester"},
]


def test_supervisor_worker_routes_through_workers_until_done(runs: Runs) -> None:
    view = runs.start_run(spec=spec("supervisor_worker", SUPERVISED))
    run_id = view.run_id
    assert "code, test" in only(view).instructions
    view = runs.step(run_id, "boss#1", {"next_step": "code", "task": "write it"})
    code = only(view)
    assert code.task_id == "code#1"
    assert code.input["assignment"] == {"next_step": "code", "task": "write it"}
    view = runs.step(run_id, "code#1", {"diff": "x"})
    boss = only(view)
    assert (boss.task_id, boss.attempt) == ("boss#2", 1)
    assert boss.input["last_worker"] == {"step": "code", "agent": "coder", "output": {"diff": "x"}}
    view = runs.step(run_id, "boss#2", {"next_step": "test"})
    view = runs.step(run_id, "test#1", {"passed": 3})
    assert only(view).input["last_worker"] == {"step": "test", "agent": "tester", "output": {"passed": 3}}
    view = runs.step(run_id, "boss#3", {"done": True, "summary": "shipped"})
    assert view.status == "completed"
    assert view.final_output == {"done": True, "summary": "shipped"}
    assert issued(runs, run_id) == ["boss#1", "code#1", "boss#2", "test#1", "boss#3"]
    assert end_reason(runs, run_id) == "the supervisor declared the work done"


def test_supervisor_naming_an_unknown_worker_is_asked_again(runs: Runs) -> None:
    view = runs.start_run(spec=spec("supervisor_worker", SUPERVISED))
    answer = runs.step(view.run_id, "boss#1", {"next_step": "design"})
    assert answer.accepted is True
    feedback = "the supervisor must return next_step naming a worker (code, test) or done: true; got next_step 'design'"
    assert [(g.name, g.passed, g.feedback) for g in answer.gate_results] == [("next_step", False, feedback)]
    boss = only(answer)
    assert (boss.task_id, boss.attempt, boss.feedback) == ("boss#2", 2, feedback)
    assert answer.status == "running"


def test_supervisor_worker_fails_when_the_supervisor_keeps_naming_no_worker(runs: Runs) -> None:
    s = spec("supervisor_worker", SUPERVISED, policy={"retry": {"max_retries": 1}})
    view = runs.start_run(spec=s)
    runs.step(view.run_id, "boss#1", {"next_step": "design"})
    view = runs.step(view.run_id, "boss#2", {"thinking": "..."})
    assert view.status == "failed"
    assert view.error == (
        "step 'boss' failed after 2 attempts: the supervisor must return next_step naming a worker "
        "(code, test) or done: true; got neither"
    )
    assert issued(runs, view.run_id) == ["boss#1", "boss#2"]


def test_supervisor_worker_fails_at_max_turns(runs: Runs) -> None:
    view = runs.start_run(spec=spec("supervisor_worker", SUPERVISED, policy={"max_turns": 4}))
    run_id = view.run_id
    runs.step(run_id, "boss#1", {"next_step": "code"})
    runs.step(run_id, "code#1", "v1")
    runs.step(run_id, "boss#2", {"next_step": "code"})
    view = runs.step(run_id, "code#2", "v2")
    assert view.status == "failed"
    assert view.error == "max_turns 4 reached before step 'boss' passed"
    assert issued(runs, run_id) == ["boss#1", "code#1", "boss#2", "code#2", "boss#3"]


# --- evaluator_optimizer --------------------------------------------------------------------------

EVAL: list[dict[str, Any]] = [{"name": "evaluate", "agent": "critic"}, {"name": "improve", "agent": "writer"}]


def test_evaluator_optimizer_feeds_the_evaluation_to_the_optimizer_until_it_passes(runs: Runs) -> None:
    view = runs.start_run(spec=spec("evaluator_optimizer", EVAL))
    run_id = view.run_id
    assert only(view).task_id == "evaluate#1"
    evaluation = {"score": 0.4, "comments": "needs tests", "passed": False}
    view = runs.step(run_id, "evaluate#1", evaluation)
    improve = only(view)
    assert improve.task_id == "improve#1"
    assert improve.input["evaluation"] == evaluation
    assert improve.feedback == "Evaluation: score 0.4; needs tests"
    assert "needs tests" in improve.instructions
    view = runs.step(run_id, "improve#1", {"revision": 2})
    evaluate = only(view)
    assert (evaluate.task_id, evaluate.attempt) == ("evaluate#2", 1)
    assert evaluate.input["revision"] == {"revision": 2}
    view = runs.step(run_id, "evaluate#2", {"score": 0.85, "comments": "good"})
    assert view.status == "completed"
    assert view.final_output == {"score": 0.85, "comments": "good"}
    assert issued(runs, run_id) == ["evaluate#1", "improve#1", "evaluate#2"]
    assert end_reason(runs, run_id) == "the evaluation passed"


@pytest.mark.parametrize("verdict", [{"passed": True}, {"approved": True, "score": 0.1}])
def test_evaluator_optimizer_passed_or_approved_ends_the_loop(runs: Runs, verdict: dict[str, Any]) -> None:
    view = runs.start_run(spec=spec("evaluator_optimizer", EVAL))
    view = runs.step(view.run_id, "evaluate#1", verdict)
    assert view.status == "completed"
    assert issued(runs, view.run_id) == ["evaluate#1"]
    assert statuses(view) == {"evaluate": "completed", "improve": "skipped"}


def test_evaluator_optimizer_uses_the_quality_threshold(runs: Runs) -> None:
    s = spec(
        "evaluator_optimizer", EVAL, stop_conditions=[{"condition_type": "quality_threshold", "value": 0.5}]
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "evaluate#1", {"score": 0.45, "comments": "close"})
    assert only(view).task_id == "improve#1"
    view = runs.step(view.run_id, "improve#1", "better")
    view = runs.step(view.run_id, "evaluate#2", {"score": 0.5})
    assert view.status == "completed"


def test_evaluator_optimizer_fails_at_max_turns(runs: Runs) -> None:
    view = runs.start_run(spec=spec("evaluator_optimizer", EVAL, policy={"max_turns": 3}))
    run_id = view.run_id
    runs.step(run_id, "evaluate#1", {"score": 0.1, "comments": "poor"})
    runs.step(run_id, "improve#1", "v2")
    view = runs.step(run_id, "evaluate#2", {"score": 0.5, "comments": "better, still thin"})
    assert view.status == "failed"
    assert view.error == "max_turns 3 reached before step 'improve' passed"
    assert issued(runs, run_id) == ["evaluate#1", "improve#1", "evaluate#2", "improve#2"]
    last = runs.trace(run_id)
    improve2 = next(e for e in last if e.type == "task_issued" and event_data(e)["task_id"] == "improve#2")
    assert event_data(improve2)["feedback"] == "Evaluation: score 0.5; better, still thin"


# --- custom ---------------------------------------------------------------------------------------

CUSTOM: list[dict[str, Any]] = [
    {
        "name": "triage",
        "agent": "lead",
        "routes": {"field": "kind", "map": {"bug": "fix", "docs": "write_docs"}},
    },
    {"name": "fix", "agent": "coder", "next": ["test_a", "test_b"], "on_failure": "rollback"},
    {"name": "test_a", "agent": "tester", "next": "merge"},
    {"name": "test_b", "agent": "tester", "next": "merge"},
    {"name": "merge", "agent": "lead", "dependencies": ["test_a", "test_b"]},
    {"name": "write_docs", "agent": "writer"},
    {"name": "rollback", "agent": "coder"},
]


def test_custom_routes_fans_out_and_joins(runs: Runs) -> None:
    view = runs.start_run(spec=spec("custom", CUSTOM))
    run_id = view.run_id
    assert "bug, docs" in only(view).instructions
    view = runs.step(run_id, "triage#1", {"kind": "bug"})
    assert only(view).task_id == "fix#1"
    view = runs.step(run_id, "fix#1", {"patch": "p"})
    assert [t.task_id for t in view.tasks] == ["test_a#1", "test_b#1"]
    assert task(view, "test_a#1").input["previous"] == {"step": "fix", "output": {"patch": "p"}}
    view = runs.step(run_id, "test_b#1", "B ok")
    assert [t.task_id for t in view.tasks] == ["test_a#1"]  # merge waits for both
    view = runs.step(run_id, "test_a#1", "A ok")
    merge = only(view)
    assert merge.task_id == "merge#1"
    assert merge.input["dependencies"] == {"test_a": "A ok", "test_b": "B ok"}
    view = runs.step(run_id, "merge#1", {"merged": True})
    assert view.status == "completed"
    assert view.final_output == {"merged": True}
    assert issued(runs, run_id) == ["triage#1", "fix#1", "test_a#1", "test_b#1", "merge#1"]
    assert end_reason(runs, run_id) == "no step follows"
    assert statuses(view)["write_docs"] == "skipped"
    assert statuses(view)["rollback"] == "skipped"


def test_custom_route_picks_another_branch(runs: Runs) -> None:
    view = runs.start_run(spec=spec("custom", CUSTOM))
    view = runs.step(view.run_id, "triage#1", {"kind": "docs"})
    assert only(view).task_id == "write_docs#1"
    view = runs.step(view.run_id, "write_docs#1", "README")
    assert view.status == "completed"
    assert issued(runs, view.run_id) == ["triage#1", "write_docs#1"]


def test_custom_route_without_match_is_a_failed_gate_and_default_is_used(runs: Runs) -> None:
    view = runs.start_run(spec=spec("custom", CUSTOM))
    answer = runs.step(view.run_id, "triage#1", {"kind": "feature"})
    assert [(g.name, g.passed) for g in answer.gate_results] == [("routes", False)]
    assert only(answer).feedback == "output.kind must be one of: bug, docs (got 'feature')"
    steps = [dict(CUSTOM[0], routes=dict(CUSTOM[0]["routes"], default="write_docs")), *CUSTOM[1:]]
    view = runs.start_run(spec=spec("custom", steps))
    view = runs.step(view.run_id, "triage#1", {"kind": "feature"})
    assert only(view).task_id == "write_docs#1"


def test_custom_on_failure_routes_to_the_fallback_step(runs: Runs) -> None:
    view = runs.start_run(spec=spec("custom", CUSTOM, policy={"retry": {"max_retries": 1}}))
    run_id = view.run_id
    runs.step(run_id, "triage#1", {"kind": "bug"})
    view = runs.step(run_id, "fix#1", None, outcome="failure", error="won't compile")
    assert only(view).task_id == "fix#2"
    view = runs.step(run_id, "fix#2", None, outcome="failure", error="still broken")
    rollback = only(view)
    assert rollback.task_id == "rollback#1"
    assert rollback.feedback == "attempt 2 reported failure: still broken"
    assert rollback.input["failure"] == {"step": "fix", "reason": "attempt 2 reported failure: still broken"}
    assert view.status == "running"
    view = runs.step(run_id, "rollback#1", {"reverted": True})
    assert view.status == "completed"
    assert statuses(view)["fix"] == "failed"
    assert issued(runs, run_id) == ["triage#1", "fix#1", "fix#2", "rollback#1"]


def test_custom_fails_when_a_step_without_on_failure_runs_out_of_retries(runs: Runs) -> None:
    view = runs.start_run(spec=spec("custom", CUSTOM, policy={"retry": {"max_retries": 0}}))
    run_id = view.run_id
    runs.step(run_id, "triage#1", {"kind": "docs"})
    view = runs.step(run_id, "write_docs#1", None, outcome="failure", error="no access")
    assert view.status == "failed"
    assert view.error == "step 'write_docs' failed after 1 attempt: attempt 1 reported failure: no access"
    assert issued(runs, run_id) == ["triage#1", "write_docs#1"]


def test_custom_cycle_fails_at_max_turns(runs: Runs) -> None:
    steps: list[dict[str, Any]] = [
        {"name": "draft", "agent": "w", "next": "check"},
        {
            "name": "check",
            "agent": "r",
            "routes": {"field": "verdict", "map": {"redo": "draft", "ok": "ship"}},
        },
        {"name": "ship", "agent": "w"},
    ]
    view = runs.start_run(spec=spec("custom", steps, policy={"max_turns": 3}))
    run_id = view.run_id
    runs.step(run_id, "draft#1", "v1")
    view = runs.step(run_id, "check#1", {"verdict": "redo"})
    assert only(view).task_id == "draft#2"
    assert only(view).input["previous"] == {"step": "check", "output": {"verdict": "redo"}}
    view = runs.step(run_id, "draft#2", "v2")
    assert view.status == "failed"
    assert view.error == "max_turns 3 reached before step 'check' passed"
    assert issued(runs, run_id) == ["draft#1", "check#1", "draft#2", "check#2"]


# --- gates and stop conditions ----------------------------------------------------------------------


def test_condition_gates_pass_and_fail_with_feedback(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "impl", "agent": "a", "verification_gates": ["has_summary", "small"]}],
        policy={
            "verification_gates": [
                {"name": "has_summary", "condition": "length(output.summary || '') > `0`"},
                {"name": "small", "condition": "output.lines < `100`", "feedback": "keep it under 100 lines"},
            ]
        },
    )
    view = runs.start_run(spec=s)
    answer = runs.step(view.run_id, "impl#1", {"summary": "", "lines": 500})
    assert [(g.name, g.passed, g.feedback) for g in answer.gate_results] == [
        ("has_summary", False, "gate 'has_summary' failed: `length(output.summary || '') > `0`` is false"),
        ("small", False, "keep it under 100 lines"),
    ]
    assert only(answer).feedback == (
        "gate 'has_summary' failed: `length(output.summary || '') > `0`` is false\nkeep it under 100 lines"
    )
    answer = runs.step(view.run_id, "impl#2", {"summary": "ok", "lines": 500})
    assert [(g.name, g.passed) for g in answer.gate_results] == [("has_summary", True), ("small", False)]
    answer = runs.step(view.run_id, "impl#3", {"summary": "ok", "lines": 5})
    assert [(g.name, g.passed) for g in answer.gate_results] == [("has_summary", True), ("small", True)]
    assert answer.status == "completed"


def test_condition_gate_sees_context_and_attempt(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "impl", "agent": "a", "verification_gates": ["second_try"]}],
        context={"want": "yes"},
        policy={
            "verification_gates": [
                {"name": "second_try", "condition": "attempt >= `2` && output == context.want"}
            ]
        },
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "impl#1", "yes")
    view = runs.step(view.run_id, "impl#2", "yes")
    assert view.status == "completed"


def test_abort_gate_fails_the_run_without_retry(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "impl", "agent": "a", "verification_gates": ["safe"]}],
        policy={
            "verification_gates": [
                {
                    "name": "safe",
                    "condition": "output.rm_rf != `true`",
                    "on_failure": "abort",
                    "feedback": "no",
                }
            ]
        },
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "impl#1", {"rm_rf": True})
    assert view.status == "failed"
    assert view.error == "step 'impl' aborted: no"


def test_output_schema_mismatch_is_retried_with_the_schema_error(runs: Runs) -> None:
    schema = {"type": "object", "required": ["summary"], "properties": {"summary": {"type": "string"}}}
    view = runs.start_run(spec=spec("sequential", [{"name": "impl", "agent": "a", "output_schema": schema}]))
    assert only(view).output_schema == schema
    answer = runs.step(view.run_id, "impl#1", {"sumary": "typo"})
    feedback = "the output does not match the output_schema: output: 'summary' is a required property"
    assert [(g.name, g.passed, g.feedback) for g in answer.gate_results] == [
        ("output_schema", False, feedback)
    ]
    assert (only(answer).task_id, only(answer).feedback) == ("impl#2", feedback)
    answer = runs.step(view.run_id, "impl#2", {"summary": 3})
    assert (
        only(answer).feedback
        == "the output does not match the output_schema: output.summary: 3 is not of type 'string'"
    )
    answer = runs.step(view.run_id, "impl#3", {"summary": "fixed"})
    assert answer.status == "completed"


def test_step_output_schema_wins_over_the_agents(runs: Runs) -> None:
    s = spec("sequential", [{"name": "impl", "agent": "a", "output_schema": {"type": "string"}}])
    s["agents"] = [{"name": "a", "output_schema": {"type": "object"}}]
    view = runs.start_run(spec=s)
    assert only(view).output_schema == {"type": "string"}
    assert runs.step(view.run_id, "impl#1", "text").status == "completed"


def test_top_level_output_schema_mismatch_fails_the_last_step(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "plan", "agent": "a"}, {"name": "impl", "agent": "a"}],
        output_schema={"schema_def": {"type": "object"}, "required_fields": ["summary"]},
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "plan#1", "no schema here")
    answer = runs.step(view.run_id, "impl#1", {"result": 1})
    feedback = (
        "the output does not match the top-level output_schema (the run's final output): "
        "output: 'summary' is a required property"
    )
    assert [(g.name, g.passed, g.feedback) for g in answer.gate_results] == [
        ("final_output_schema", False, feedback)
    ]
    assert answer.status == "running"
    retry = only(answer)
    assert (retry.task_id, retry.attempt, retry.feedback) == ("impl#2", 2, feedback)
    answer = runs.step(view.run_id, "impl#2", {"summary": "done"})
    assert answer.status == "completed"
    assert answer.final_output == {"summary": "done"}


def test_goal_met_ends_the_run_early(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}, {"name": "c", "agent": "w"}],
        stop_conditions=[{"condition_type": "goal_met", "value": "output.done == `true`"}],
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "a#1", {"done": False})
    assert only(view).task_id == "b#1"
    view = runs.step(view.run_id, "b#1", {"done": True})
    assert view.status == "completed"
    assert end_reason(runs, view.run_id) == "goal_met: output.done == `true`"
    assert statuses(view) == {"a": "completed", "b": "completed", "c": "skipped"}


def test_goal_met_true_string_is_a_field_lookup_and_runs_all_steps(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}],
        stop_conditions=[{"condition_type": "goal_met", "value": "true"}],
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "a#1", {"x": 1})
    assert only(view).task_id == "b#1"


def test_quality_threshold_ends_a_sequential_run_early(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}],
        stop_conditions=[{"condition_type": "quality_threshold", "value": 0.7}],
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "a#1", {"score": 0.69})
    assert only(view).task_id == "b#1"
    view = runs.step(view.run_id, "b#1", {"score": 0.7})
    assert view.status == "completed"
    assert end_reason(runs, view.run_id) == "quality_threshold 0.7 reached (score 0.7)"


def test_the_last_allowed_turn_may_complete_the_run(runs: Runs) -> None:
    s = spec(
        "sequential", [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}], policy={"max_turns": 2}
    )
    view = runs.start_run(spec=s)
    runs.step(view.run_id, "a#1", 1)
    view = runs.step(view.run_id, "b#1", 2)
    assert view.status == "completed"
    assert view.turn == 2


def test_max_turns_stop_condition_tightens_the_policy(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}],
        stop_conditions=[{"condition_type": "max_turns", "value": 1}],
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "a#1", 1)
    assert view.status == "failed"
    assert view.error == "max_turns 1 reached before step 'b' passed"


def test_goal_met_in_a_fan_out_closes_the_other_branches(runs: Runs) -> None:
    s = spec(
        "parallel_fan_out",
        FAN,
        stop_conditions=[{"condition_type": "goal_met", "value": "steps.b.output.found"}],
    )
    view = runs.start_run(spec=s)
    view = runs.step(view.run_id, "b#1", {"found": "the bug"})
    assert view.status == "completed"
    assert view.final_output == {"found": "the bug"}
    assert view.tasks == []
    with pytest.raises(Conflict, match="has ended"):
        runs.step(view.run_id, "a#1", "late")


# --- approval -------------------------------------------------------------------------------------

APPROVAL = spec(
    "sequential",
    [
        {"name": "impl", "agent": "a", "verification_gates": ["nonempty", "signoff"]},
        {"name": "ship", "agent": "a"},
    ],
    policy={
        "retry": {"max_retries": 1},
        "verification_gates": [
            {"name": "nonempty", "condition": "output != ''"},
            {"name": "signoff", "approval": True, "prompt": "Is the change safe?"},
        ],
    },
)


def test_approval_gate_waits_for_a_person_then_continues(runs: Runs) -> None:
    view = runs.start_run(spec=APPROVAL)
    run_id = view.run_id
    answer = runs.step(run_id, "impl#1", "patch")
    assert answer.accepted is True
    assert [(g.name, g.passed) for g in answer.gate_results] == [("nonempty", True), ("signoff", None)]
    assert answer.status == "waiting_approval"
    assert answer.tasks == []
    assert f"loopengt approve {run_id}" in answer.next_action
    assert "signoff" in answer.next_action
    assert statuses(answer)["impl"] == "waiting_approval"
    with pytest.raises(NotFound, match="no open tasks: the run waits for approval of gate 'signoff'"):
        runs.step(run_id, "ship#1", "early")
    view = runs.approve(run_id, comment="looks fine", by="alice")
    assert view.status == "running"
    assert only(view).task_id == "ship#1"
    # the recorded answer is updated with the person's decision
    again = runs.step(run_id, "impl#1", "patch")
    assert [(g.name, g.passed) for g in again.gate_results] == [("nonempty", True), ("signoff", True)]
    view = runs.step(run_id, "ship#1", "shipped")
    assert view.status == "completed"
    types = [e.type for e in runs.trace(run_id)]
    assert "approval_requested" in types
    assert "approval_given" in types


def test_approval_rejection_retries_with_the_comment_and_uses_the_retry_budget(runs: Runs) -> None:
    view = runs.start_run(spec=APPROVAL)
    run_id = view.run_id
    runs.step(run_id, "impl#1", "patch")
    view = runs.approve(run_id, approved=False, comment="add a test first", by="bob")
    retry = only(view)
    assert (retry.task_id, retry.attempt) == ("impl#2", 2)
    assert "add a test first" in (retry.feedback or "")
    assert retry.feedback == "rejected by bob at gate 'signoff': add a test first"
    runs.step(run_id, "impl#2", "patch 2")
    view = runs.approve(run_id, approved=False, comment="still no test")
    assert view.status == "failed"
    assert (
        view.error
        == "step 'impl' failed after 2 attempts: rejected by a person at gate 'signoff': still no test"
    )
    assert issued(runs, run_id) == ["impl#1", "impl#2"]


def test_approving_a_run_that_is_not_waiting_is_a_conflict(runs: Runs) -> None:
    view = runs.start_run(spec=APPROVAL)
    count = event_count(runs, view.run_id)
    with pytest.raises(Conflict, match="is not waiting for approval"):
        runs.approve(view.run_id)
    assert event_count(runs, view.run_id) == count


def test_waiting_approval_survives_a_restart(tmp_path: Path, runs: Runs, clock: Clock) -> None:
    view = runs.start_run(spec=APPROVAL)
    runs.step(view.run_id, "impl#1", "patch")
    fresh = Runs(FileStore(tmp_path / "store"), clock=clock, cwd=tmp_path)
    assert fresh.get_run(view.run_id).status == "waiting_approval"
    view = fresh.approve(view.run_id)
    assert only(view).task_id == "ship#1"


# --- deadlines, budgets, cancellation -------------------------------------------------------------


def test_task_expiry_retries_with_feedback_then_fails(runs: Runs, clock: Clock) -> None:
    s = spec(
        "sequential",
        [{"name": "x", "agent": "a", "timeout_seconds": 60}],
        policy={"retry": {"max_retries": 1}},
    )
    view = runs.start_run(spec=s)
    run_id = view.run_id
    assert only(view).expires_at == "2026-01-01T12:01:00.000Z"
    clock.advance(59)
    assert only(runs.get_run(run_id)).task_id == "x#1"
    clock.advance(1)
    view = runs.get_run(run_id)
    retry = only(view)
    assert (retry.task_id, retry.attempt) == ("x#2", 2)
    assert retry.feedback == "task x#1 expired after 60 s without a submission"
    assert retry.expires_at == "2026-01-01T12:02:00.000Z"
    count = event_count(runs, run_id)
    with pytest.raises(
        Conflict, match=r"task 'x#1' expired after 60 s and takes no submission; open tasks: x#2"
    ):
        runs.step(run_id, "x#1", "late")
    assert event_count(runs, run_id) == count
    expired = [e for e in runs.trace(run_id) if e.type == "task_expired"]
    assert [(event_data(e)["task_id"], event_data(e)["after_seconds"]) for e in expired] == [("x#1", 60.0)]
    clock.advance(600)
    view = runs.get_run(run_id)
    assert view.status == "failed"
    assert view.error == "step 'x' failed after 2 attempts: task x#2 expired after 60 s without a submission"
    assert issued(runs, run_id) == ["x#1", "x#2"]


def test_a_step_call_after_the_deadline_expires_the_task_first(runs: Runs, clock: Clock) -> None:
    s = spec("sequential", [{"name": "x", "agent": "a", "timeout_seconds": 10}])
    view = runs.start_run(spec=s)
    clock.advance(11)
    with pytest.raises(Conflict, match="expired after 10 s"):
        runs.step(view.run_id, "x#1", "too late")
    assert only(runs.get_run(view.run_id)).task_id == "x#2"


def test_agent_timeout_applies_when_the_step_has_none(runs: Runs, clock: Clock) -> None:
    s = spec("sequential", [{"name": "x", "agent": "a"}])
    s["agents"] = [{"name": "a", "timeout_seconds": 30}]
    view = runs.start_run(spec=s)
    assert only(view).expires_at == "2026-01-01T12:00:30.000Z"


def test_max_total_time_fails_the_run_with_the_reason(runs: Runs, clock: Clock) -> None:
    s = spec(
        "sequential",
        [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}],
        policy={"max_total_time_seconds": 100},
    )
    view = runs.start_run(spec=s)
    runs.step(view.run_id, "a#1", "ok")
    clock.advance(101)
    view = runs.get_run(view.run_id)
    assert view.status == "failed"
    assert view.error == "max_total_time_seconds 100 reached after 101 s before step 'b' passed"
    assert view.tasks == []
    with pytest.raises(Conflict, match="has ended"):
        runs.step(view.run_id, "b#1", "late")


def test_cancel_run(runs: Runs) -> None:
    view = runs.start_run(spec=spec("sequential", [{"name": "a", "agent": "w"}, {"name": "b", "agent": "w"}]))
    view = runs.cancel_run(view.run_id, "wrong goal")
    assert view.status == "cancelled"
    assert view.error == "wrong goal"
    assert view.tasks == []
    assert statuses(view) == {"a": "skipped", "b": "skipped"}
    assert end_reason(runs, view.run_id) == "wrong goal"
    with pytest.raises(Conflict, match="cancelled"):
        runs.step(view.run_id, "a#1", "x")
    with pytest.raises(Conflict):
        runs.cancel_run(view.run_id)


# --- command steps and command gates (real subprocesses) ------------------------------------------

FLAKY = (
    "import pathlib, sys\n"
    "p = pathlib.Path('attempts.txt')\n"
    "n = int(p.read_text()) + 1 if p.exists() else 1\n"
    "p.write_text(str(n))\n"
    "print('run', n)\n"
    "sys.exit(0 if n >= {ok} else 3)\n"
)


def test_command_step_retries_with_the_output_tail_as_feedback(runs: Runs, tmp_path: Path) -> None:
    s = spec(
        "sequential",
        [{"name": "build", "run": py(FLAKY.format(ok=3))}, {"name": "report", "agent": "a"}],
        policy={"retry": {"max_retries": 3, "initial_delay_seconds": 0}},
    )
    view = runs.start_run(spec=s)
    run_id = view.run_id
    report = only(view)  # the command ran (and was retried) before start_run answered
    assert report.task_id == "report#1"
    assert (tmp_path / "attempts.txt").read_text() == "3"
    assert issued(runs, run_id) == ["build#1", "build#2", "build#3", "report#1"]
    retries = [event_data(e) for e in runs.trace(run_id) if e.type == "retry_scheduled"]
    assert [r["attempt"] for r in retries] == [2, 3]
    assert all(r["delay_seconds"] == 0 for r in retries)
    assert retries[0]["feedback"].endswith("exited with code 3:\nrun 1")
    assert retries[1]["feedback"].endswith("exited with code 3:\nrun 2")
    assert report.input["previous"]["step"] == "build"
    result = report.input["previous"]["output"]
    assert (result["exit_code"], result["output"].strip(), result["timed_out"]) == (0, "run 3", False)
    view = runs.step(run_id, "report#1", "done")
    assert view.status == "completed"


def test_command_step_fails_when_retries_run_out(runs: Runs, tmp_path: Path) -> None:
    s = spec(
        "sequential",
        [{"name": "build", "run": py("print('E: syntax error on line 3'); raise SystemExit(2)")}],
        policy={"retry": {"max_retries": 1, "initial_delay_seconds": 0}},
    )
    view = runs.start_run(spec=s)
    assert view.status == "failed"
    assert view.error is not None
    assert view.error.startswith("step 'build' failed after 2 attempts: `")
    assert view.error.endswith("exited with code 2:")
    assert issued(runs, view.run_id) == ["build#1", "build#2"]
    failed = [e for e in runs.trace(view.run_id) if e.type == "step_failed"]
    assert "E: syntax error on line 3" in (
        runs.kernel.read(view.run_id).state.steps["build"].last_failure or ""
    )
    assert len(failed) == 1


def test_command_step_backoff_delays_the_rerun(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path, allow_inline_commands=True)  # real clock
    s = spec(
        "sequential",
        [{"name": "build", "run": py(FLAKY.format(ok=2))}],
        policy={"retry": {"max_retries": 2, "initial_delay_seconds": 0.3, "backoff": "fixed"}},
    )
    started = time.monotonic()
    view = runs.start_run(spec=s)
    assert time.monotonic() - started >= 0.3
    assert view.status == "completed"
    retry = next(e for e in runs.trace(view.run_id) if e.type == "retry_scheduled")
    assert event_data(retry)["delay_seconds"] == 0.3


def test_command_gate_failure_output_becomes_feedback_and_exit_0_passes(runs: Runs, tmp_path: Path) -> None:
    check = (
        "import os, sys\n"
        "if not os.path.exists('fixed'):\n"
        "    print('FAILED test_x - assert 1 == 2')\n"
        "    sys.exit(1)\n"
        "print('1 passed')"
    )
    s = spec(
        "sequential",
        [{"name": "impl", "agent": "coder", "verification_gates": ["has_summary", "tests_pass"]}],
        policy={
            "retry": {"max_retries": 2, "initial_delay_seconds": 0},
            "verification_gates": [
                {"name": "has_summary", "condition": "output.summary != null"},
                {"name": "tests_pass", "command": py(check)},
            ],
        },
    )
    view = runs.start_run(spec=s)
    run_id = view.run_id
    answer = runs.step(run_id, "impl#1", {"summary": "tried"})
    assert answer.accepted is True
    assert [(g.name, g.passed) for g in answer.gate_results] == [("has_summary", True), ("tests_pass", False)]
    retry = only(answer)
    assert retry.task_id == "impl#2"
    assert retry.attempt == 2
    assert "exited with code 1" in (retry.feedback or "")
    assert (retry.feedback or "").endswith("FAILED test_x - assert 1 == 2")
    assert answer.gate_results[1].feedback == retry.feedback
    (tmp_path / "fixed").write_text("")
    answer = runs.step(run_id, "impl#2", {"summary": "fixed it"})
    assert [(g.name, g.passed) for g in answer.gate_results] == [("has_summary", True), ("tests_pass", True)]
    assert answer.status == "completed"
    assert answer.final_output == {"summary": "fixed it"}
    types = [e.type for e in runs.trace(run_id)]
    assert types.count("command_requested") == 2
    assert types.count("command_finished") == 2


def test_command_gate_failure_exhausts_the_retry_budget(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "impl", "agent": "coder", "verification_gates": ["tests_pass"]}],
        policy={
            "retry": {"max_retries": 1, "initial_delay_seconds": 0},
            "verification_gates": [
                {"name": "tests_pass", "command": py("print('2 failed'); raise SystemExit(1)")}
            ],
        },
    )
    view = runs.start_run(spec=s)
    runs.step(view.run_id, "impl#1", "a")
    view = runs.step(view.run_id, "impl#2", "b")
    assert view.status == "failed"
    assert view.error is not None
    assert view.error.startswith("step 'impl' failed after 2 attempts: `")
    assert issued(runs, view.run_id) == ["impl#1", "impl#2"]


def test_command_gate_timeout_is_a_failure_with_feedback(runs: Runs) -> None:
    s = spec(
        "sequential",
        [{"name": "impl", "agent": "coder", "verification_gates": ["slow"]}],
        policy={
            "verification_gates": [
                {"name": "slow", "command": py("import time; time.sleep(30)"), "timeout_seconds": 0.5}
            ],
        },
    )
    view = runs.start_run(spec=s)
    answer = runs.step(view.run_id, "impl#1", "a")
    assert answer.gate_results[0].passed is False
    assert "timed out after" in (answer.gate_results[0].feedback or "")
    assert only(answer).task_id == "impl#2"
