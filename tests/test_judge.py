"""Judge gates (`judge: {agent, rubric, threshold}`): another agent role scores an output.

The refusal goes through the real `mcp` client against two stdio server processes on one store (two MCP
sessions): the worker's session is refused the judge task, the second session's answer counts. The
acceptance (a judge that scores 0.4 then 0.9 with threshold 0.8: one retry with the reasons as
feedback, then completed) runs headless with two scripted agent commands, one per role. Validation,
a parallel fan-out with a judge gate, an expired judge task and a judge's failure go through the runs
service on a real file store with a fake clock.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from clock import Clock
from hook_helpers import git_project, payload, project_runs
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import HttpServer, assert_tool_error, ok, run_cli, running, stdio_client, step, trace_events
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loopengt_core.engine.validation import validate_data
from loopengt_core.model.errors import Conflict, InvalidArgument
from loopengt_core.model.events import event_data
from loopengt_core.service.runs import Runs
from loopengt_core.service.telemetry import RunTracer
from loopengt_core.store.files import FileStore
from loopengt_server.hooks import run_stop_hook

RUBRIC = "The summary names the bug and the fix."
JUDGE_SCHEMA_KEYS = ["passed", "reasons", "score"]


def judged_spec(*, pattern: str = "sequential", steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A coder's step with a judge gate whose judge is the critic (threshold 0.8, two retries)."""
    return {
        "name": "judged",
        "goal": "Fix the bug",
        "pattern": pattern,
        "workspace": "none",
        "agents": [{"name": "coder"}, {"name": "critic", "system_prompt": "You review {goal}."}],
        "steps": steps or [{"name": "write", "agent": "coder", "verification_gates": ["review"]}],
        "policy": {
            "max_turns": 12,
            "retry": {"max_retries": 2, "backoff": "none"},
            "verification_gates": [
                {"name": "review", "judge": {"agent": "critic", "rubric": RUBRIC, "threshold": 0.8}}
            ],
        },
    }


def verdict(score: float, *reasons: str, passed: bool | None = None) -> dict[str, Any]:
    return {"score": score, "passed": score >= 0.8 if passed is None else passed, "reasons": list(reasons)}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs(tmp_path: Path, clock: Clock) -> Runs:
    return Runs(FileStore(tmp_path / "store"), clock=clock, cwd=tmp_path, allow_inline_commands=True)


def trace(runs: Runs, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, event_data(e)) for e in runs.trace(run_id)]


# --- validation ----------------------------------------------------------------------------------------


def problems(data: dict[str, Any]) -> dict[str, str]:
    _, found = validate_data(data)
    return {p.location: p.message for p in found}


def test_the_judge_must_be_a_known_role_other_than_the_judged_steps() -> None:
    unknown = judged_spec()
    unknown["policy"]["verification_gates"][0]["judge"]["agent"] = "nobody"
    assert problems(unknown) == {
        "policy.verification_gates[0].judge.agent": "unknown agent 'nobody' (agents: coder, critic)"
    }
    itself = judged_spec()
    itself["policy"]["verification_gates"][0]["judge"]["agent"] = "coder"
    assert problems(itself) == {
        "policy.verification_gates[0].judge.agent": "gate 'review' judges step 'write', whose agent is "
        "'coder': the agent under judgement cannot judge itself; name another role (other agents: critic)"
    }


def test_a_judge_gate_has_a_threshold_from_0_to_1_a_rubric_and_no_other_kind() -> None:
    bad = judged_spec()
    bad["policy"]["verification_gates"][0]["judge"].update(threshold=1.5, rubric="")
    found = problems(bad)
    assert {
        "policy.verification_gates[0].judge.threshold",
        "policy.verification_gates[0].judge.rubric",
    } <= set(found)
    assert "less than or equal to 1" in found["policy.verification_gates[0].judge.threshold"]
    both = judged_spec()
    both["policy"]["verification_gates"][0]["condition"] = "output.summary"
    assert problems(both) == {
        "policy.verification_gates[0]": "a gate needs exactly one of 'condition', 'command', 'approval: true', "
        "'loop_spec' or 'judge' (has condition, judge)"
    }
    missing = judged_spec()
    del missing["policy"]["verification_gates"][0]["judge"]["threshold"]
    assert "policy.verification_gates[0].judge.threshold" in problems(missing)


# --- the engine, through the runs service ------------------------------------------------------------


def test_a_judge_task_carries_the_output_rubric_threshold_and_fixed_schema(runs: Runs) -> None:
    run_id = runs.start_run(spec=judged_spec()).run_id
    answer = runs.step(run_id, "write#1", {"summary": "fixed"}, submitted_by="worker")
    assert answer.accepted
    assert answer.status == "running"
    [task] = answer.tasks
    assert (task.task_id, task.agent, task.judging, task.judge_gate) == (
        "write#1:review",
        "critic",
        "write#1",
        "review",
    )
    assert task.input["output"] == {"summary": "fixed"}
    assert (task.input["rubric"], task.input["threshold"]) == (RUBRIC, 0.8)
    assert task.input["judging"] == {"task_id": "write#1", "step": "write", "agent": "coder", "attempt": 1}
    assert sorted(task.output_schema["required"]) == JUDGE_SCHEMA_KEYS  # type: ignore[index]
    assert task.instructions.startswith("You review Fix the bug.\n\nGoal: Fix the bug")
    assert RUBRIC in task.instructions
    assert "score\n>= 0.8" not in task.instructions
    assert "Judge tasks are for another agent" in answer.next_action
    steps = {s.name: (s.status, s.attempts) for s in answer.steps}
    assert steps == {"write": ("running", 1)}  # the judge's task spends none of the step's attempts


def test_the_worker_is_refused_its_own_judge_task_and_a_bad_verdict_is_refused(runs: Runs) -> None:
    run_id = runs.start_run(spec=judged_spec()).run_id
    runs.step(run_id, "write#1", {"summary": "fixed"}, submitted_by="worker")
    before = len(runs.trace(run_id))
    with pytest.raises(Conflict) as refused:
        runs.step(run_id, "write#1:review", verdict(1.0, "great"), submitted_by="worker")
    assert refused.value.message.startswith(
        "task write#1:review judges step write's output (write#1), which this session submitted (worker); "
        "another agent must judge it"
    )
    with pytest.raises(InvalidArgument, match=r"output.score: 2 is greater than the maximum of 1"):
        runs.step(run_id, "write#1:review", {"score": 2, "passed": True, "reasons": []}, submitted_by="judge")
    with pytest.raises(InvalidArgument, match=r"'reasons' is a required property"):
        runs.step(run_id, "write#1:review", {"score": 0.5, "passed": True}, submitted_by="judge")
    assert len(runs.trace(run_id)) == before  # nothing recorded
    done = runs.step(run_id, "write#1:review", verdict(0.9, "names both"), submitted_by="judge")
    assert done.status == "completed"
    assert [(g.name, g.passed) for g in done.gate_results] == [("review", True)]  # the judge sees its verdict


def test_a_high_score_the_judge_does_not_pass_fails_the_gate(runs: Runs) -> None:
    """Passing needs both: score >= threshold and passed true (the judge may veto its own score)."""
    run_id = runs.start_run(spec=judged_spec()).run_id
    runs.step(run_id, "write#1", {"summary": "fixed"})
    answer = runs.step(run_id, "write#1:review", verdict(0.95, "but it breaks the API", passed=False))
    [retry] = answer.tasks
    assert retry.task_id == "write#2"
    assert retry.feedback == (
        "judge 'critic' (gate 'review') scored 0.95 (threshold 0.8), passed: false (the judge did not pass it):\n"
        "- but it breaks the API"
    )


def test_a_judge_that_reports_failure_or_expires_fails_the_gate_with_its_reason(
    runs: Runs, clock: Clock
) -> None:
    spec = judged_spec()
    spec["agents"][1]["timeout_seconds"] = 60
    run_id = runs.start_run(spec=spec).run_id
    runs.step(run_id, "write#1", {"summary": "fixed"})
    answer = runs.step(run_id, "write#1:review", None, outcome="failure", error="cannot read the diff")
    assert [t.feedback for t in answer.tasks] == [
        "judge 'critic' (gate 'review') reported failure: cannot read the diff"
    ]
    expiring = runs.step(run_id, "write#2", {"summary": "fixed again"})
    assert expiring.tasks[0].expires_at == "2026-01-01T12:01:00.000Z"
    clock.advance(60)
    [retry] = runs.get_run(run_id).tasks
    assert (retry.task_id, retry.attempt) == ("write#3", 3)
    assert retry.feedback == (
        "judge 'critic' (gate 'review') gave no verdict: task write#2:review expired after 60 s without a "
        "submission"
    )
    kinds = [(kind, data.get("task_id"), data.get("gate")) for kind, data in trace(runs, run_id)]
    assert ("task_expired", "write#2:review", None) in kinds
    assert ("gate_failed", "write#2", "review") in kinds


def test_a_judge_gate_on_one_branch_of_a_parallel_fan_out(runs: Runs) -> None:
    steps = [
        {"name": "a", "agent": "coder", "verification_gates": ["review"]},
        {"name": "b", "agent": "coder"},
        {"name": "join", "agent": "critic", "dependencies": ["a", "b"]},
    ]
    spec = judged_spec(pattern="parallel_fan_out", steps=steps)
    spec["policy"].update(allow_parallel=True)
    run_id = runs.start_run(spec=spec).run_id
    view = runs.step(run_id, "a#1", {"summary": "a"}, submitted_by="worker")
    assert sorted(t.task_id for t in view.tasks) == ["a#1:review", "b#1"]
    view = runs.step(run_id, "a#1:review", verdict(0.4, "too thin"), submitted_by="judge")
    assert sorted(t.task_id for t in view.tasks) == ["a#2", "b#1"]
    assert next(t for t in view.tasks if t.task_id == "a#2").feedback.endswith("- too thin")  # type: ignore[union-attr]
    runs.step(run_id, "b#1", {"summary": "b"}, submitted_by="worker")
    view = runs.step(run_id, "a#2", {"summary": "a, better"}, submitted_by="worker")
    assert [t.task_id for t in view.tasks] == ["a#2:review"]  # the join waits for the judge
    view = runs.step(run_id, "a#2:review", verdict(0.85, "fine"), submitted_by="judge")
    assert [t.task_id for t in view.tasks] == ["join#1"]
    assert view.tasks[0].input["dependencies"]["a"] == {"summary": "a, better"}  # the judged output goes on
    done = runs.step(run_id, "join#1", {"summary": "joined"}, submitted_by="judge")
    assert done.status == "completed"
    scores = [d["score"] for kind, d in trace(runs, run_id) if kind.startswith("gate_") and "score" in d]
    assert scores == [0.4, 0.85]


def test_a_judge_tasks_span_ends_judged_and_the_verdict_is_the_judged_tasks_gate_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracer = RunTracer([SimpleSpanProcessor(exporter)])
    runs = Runs(FileStore(tmp_path / "store"), clock=Clock(), cwd=tmp_path, tracer=tracer)
    run_id = runs.start_run(spec=judged_spec()).run_id
    runs.step(run_id, "write#1", {"summary": "a"}, submitted_by="worker")
    runs.step(run_id, "write#1:review", verdict(0.4, "thin"), submitted_by="judge")
    runs.step(run_id, "write#2", {"summary": "b"}, submitted_by="worker")
    assert runs.step(run_id, "write#2:review", verdict(0.9, "ok"), submitted_by="judge").status == "completed"
    spans = {
        (s.attributes or {}).get("loopengt.task_id"): (s.attributes or {}).get("loopengt.outcome")
        for s in exporter.get_finished_spans()
        if s.name.startswith("invoke_agent")
    }
    assert spans == {
        "write#1": "rejected",
        "write#1:review": "judged",
        "write#2": "accepted",
        "write#2:review": "judged",
    }
    gates = [s for s in exporter.get_finished_spans() if s.name == "loopengt.gate review"]
    assert [(s.attributes or {}).get("loopengt.gate.passed") for s in gates] == [False, True]


# --- over MCP: two sessions --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_over_mcp_the_workers_session_is_refused_and_another_sessions_verdict_counts(
    tmp_path: Path,
) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(judged_spec()), encoding="utf-8")
    store = tmp_path / "store"
    async with (
        stdio_client(store, tmp_path, "auto") as worker,
        stdio_client(store, tmp_path, "auto") as judge,
    ):
        view = ok(await worker.call_tool("start_run", {"spec_path": "loop.yaml"}))
        run_id = view["run_id"]
        view = ok(await step(worker, run_id, "write#1", {"summary": "first"}))
        [task] = view["tasks"]
        assert (task["task_id"], task["judging"], task["input"]["output"]) == (
            "write#1:review",
            "write#1",
            {"summary": "first"},
        )
        refused = await step(worker, run_id, "write#1:review", verdict(1.0, "mine is perfect"))
        assert_tool_error(
            refused,
            "task write#1:review judges step write's output (write#1), which this session submitted",
            "another agent must judge it",
        )
        still = ok(await judge.call_tool("get_run", {"run_id": run_id}))
        assert [t["task_id"] for t in still["tasks"]] == ["write#1:review"]
        view = ok(await step(judge, run_id, "write#1:review", verdict(0.4, "names no bug")))
        assert [g["passed"] for g in view["gate_results"]] == [False]
        [retry] = view["tasks"]
        assert retry["task_id"] == "write#2"
        assert retry["feedback"].endswith("- names no bug")
        ok(await step(worker, run_id, "write#2", {"summary": "fixed the off-by-one in parse()"}))
        done = ok(await step(judge, run_id, "write#2:review", verdict(0.9, "clear")))
        assert done["status"] == "completed"
        events = await trace_events(worker, run_id)
    by = {
        e["data"]["task_id"]: e["data"].get("submitted_by") for e in events if e["type"] == "output_submitted"
    }
    assert set(by) == {"write#1", "write#1:review", "write#2", "write#2:review"}
    assert by["write#1"] == by["write#2"]
    assert by["write#1:review"] == by["write#2:review"]
    assert by["write#1"] != by["write#1:review"]
    assert all(str(who).startswith("mcp-session:") for who in by.values())


async def judged_by_two_clients(worker: Client, judge: Client) -> None:
    """The worker submits, is refused its judge task, and the other client's verdict completes the run."""
    view = ok(await worker.call_tool("start_run", {"spec": yaml.safe_dump(judged_spec())}))
    run_id = view["run_id"]
    ok(await step(worker, run_id, "write#1", {"summary": "first"}))
    assert_tool_error(
        await step(worker, run_id, "write#1:review", verdict(1.0, "mine")), "which this session submitted"
    )
    assert ok(await step(judge, run_id, "write#1:review", verdict(0.9, "fine")))["status"] == "completed"


@pytest.mark.anyio
@pytest.mark.parametrize(("era", "tokens"), [("legacy", None), ("auto", ("worker-token", "judge-token"))])
async def test_over_http_a_session_or_a_token_is_the_caller(
    tmp_path: Path, era: str, tokens: tuple[str, str] | None
) -> None:
    """Handshake-era sessions are callers of their own; over 2026-07-28 (no sessions) each token is one."""
    env = {"LOOPENGT_TOKEN": ",".join(tokens)} if tokens else None
    with running(HttpServer("streamable-http", tmp_path / "store", tmp_path, env=env)) as (server,):

        def client(token: str | None) -> Client:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            target = streamable_http_client(server.url, http_client=httpx2.AsyncClient(headers=headers))
            return Client(target, mode=era, read_timeout_seconds=30)

        with anyio.fail_after(60):
            async with (
                client(tokens[0] if tokens else None) as worker,
                client(tokens[1] if tokens else None) as judge,
            ):
                await judged_by_two_clients(worker, judge)


# --- headless: one command per role -----------------------------------------------------------------------

WORKER = """
import json, sys
task = json.load(sys.stdin)
print(json.dumps({"summary": f"attempt {task['attempt']}", "feedback_seen": task.get("feedback")}))
"""
JUDGE = """
import json, sys
task = json.load(sys.stdin)
assert task["judging"] and task["input"]["rubric"], task
first = task["input"]["judging"]["attempt"] == 1
print(json.dumps({"score": 0.4 if first else 0.9, "passed": not first,
                  "reasons": ["the summary names no bug"] if first else ["clear"]}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "worker.py").write_text(WORKER, encoding="utf-8")
    (project / "judge.py").write_text(JUDGE, encoding="utf-8")
    (project / "loop.yaml").write_text(yaml.safe_dump(judged_spec()), encoding="utf-8")
    return project


def test_headless_a_judge_scoring_0_4_then_0_9_retries_once_with_its_reasons_then_completes(
    project: Path,
) -> None:
    python = sys.executable
    done = run_cli(
        "run",
        "loop.yaml",
        "--agent",
        f"{python} worker.py",
        "--agent",
        f"critic={python} judge.py",
        "--quiet",
        "--run-id",
        "judged-1",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "run judged-1 completed" in done.stdout
    runs = Runs(FileStore(project / ".loopengt"), cwd=project)
    issued = [(d["task_id"], d["agent"]) for kind, d in trace(runs, "judged-1") if kind == "task_issued"]
    assert issued == [
        ("write#1", "coder"),
        ("write#1:review", "critic"),
        ("write#2", "coder"),
        ("write#2:review", "critic"),
    ]
    view = runs.get_run("judged-1")
    assert view.final_output == {
        "summary": "attempt 2",
        "feedback_seen": "judge 'critic' (gate 'review') scored 0.4 (threshold 0.8), passed: false:\n"
        "- the summary names no bug",
    }
    by = {
        d["task_id"]: d["submitted_by"] for kind, d in trace(runs, "judged-1") if kind == "output_submitted"
    }
    assert by["write#1"] == f"headless:{python} worker.py"
    assert by["write#1:review"] == f"headless:{python} judge.py"
    shown = run_cli("show", "judged-1", "--trace", cwd=project)
    assert "judge score 0.4; judge 'critic'" in shown.stdout
    assert "- the summary names no bug" in shown.stdout
    markdown = run_cli("report", "judged-1", cwd=project).stdout
    assert "| write#1 | review | failed (score 0.4) |" in markdown
    assert "- gate **review**: passed (judge's score 0.9); judge 'critic'" in markdown
    report = run_cli("eval", "judged-1", "--json", cwd=project)
    gates = {g["gate"]: g for g in json.loads(report.stdout)["gates"]}
    assert (gates["review"]["passed"], gates["review"]["failed"], gates["review"]["scores"]) == (
        1,
        1,
        [0.4, 0.9],
    )


def test_headless_refuses_one_command_for_the_worker_and_its_judge_before_any_run(project: Path) -> None:
    done = run_cli("run", "loop.yaml", "--agent", f"{sys.executable} worker.py", cwd=project)
    assert done.returncode == 2
    assert done.stderr.startswith(
        "loopengt: judge gate 'review' has role 'critic' judge step 'write' (role 'coder'), but both roles go to "
        "the same agent command"
    )
    assert "--agent critic=CMD" in done.stderr
    unknown = run_cli(
        "run",
        "loop.yaml",
        "--agent",
        f"{sys.executable} worker.py",
        "--agent",
        f"nobody={sys.executable} judge.py",
        cwd=project,
    )
    assert unknown.returncode == 2
    assert "--agent nobody=...: the spec has no agent 'nobody' (agents: coder, critic)" in unknown.stderr
    assert Runs(FileStore(project / ".loopengt"), cwd=project).list_runs() == []


# --- the stop hook ----------------------------------------------------------------------------------------


def test_the_stop_hook_does_not_hold_an_agent_on_judge_tasks_alone(tmp_path: Path) -> None:
    """The session that submitted the judged output is refused the judge task: holding it there would not help."""
    project = git_project(tmp_path)
    for runs in project_runs(project):
        run_id = runs.start_run(spec=judged_spec()).run_id
        held, _ = quick_stop(payload("claude-code/stop.json", project))
        assert held["decision"] == "block"
        assert "write#1" in held["reason"]
        runs.step(run_id, "write#1", {"summary": "fixed"}, submitted_by="worker")
        assert quick_stop(payload("claude-code/stop.json", project)) == (None, "")
        runs.step(run_id, "write#1:review", verdict(0.4, "no"), submitted_by="judge")
        again, _ = quick_stop(payload("claude-code/stop.json", project))
        assert "write#2" in again["reason"]


def quick_stop(data: dict[str, Any]) -> tuple[Any, str]:
    """The stop hook in this process: (parsed stdout or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    assert run_stop_hook(io.BytesIO(json.dumps(data).encode()), out, err) == 0
    return (json.loads(out.getvalue()) if out.getvalue().strip() else None), err.getvalue()
