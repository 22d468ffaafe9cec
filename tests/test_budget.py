"""Budgets in tokens and money (issue 16): usage reported with `step`, audit warns, enforce pauses the run
(reason `budget`, never failed) before the next task, with a checkpoint; resume with a raised limit issues
the held task and nothing is re-done. Real file stores; a restart is a new FileStore and Runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from replay import assert_fold_equals_log, fresh

from loopengt_core.engine.view import run_view
from loopengt_core.model.errors import InvalidArgument, TooLarge
from loopengt_core.model.events import event_data
from loopengt_core.model.state import project_run
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

USAGE = {"input_tokens": 2000, "output_tokens": 1000, "cost_usd": 0.01, "model": "m"}


def spec(mode: str = "enforce", **limits: Any) -> dict[str, Any]:
    return {
        "name": "budgeted",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [{"name": f"s{n}", "agent": "a"} for n in range(1, 8)],
        "policy": {"budget": {"mode": mode, **(limits or {"max_tokens": 10_000})}},
    }


def make(tmp_path: Path, body: dict[str, Any]) -> Runs:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    return Runs(FileStore(tmp_path / "store"), cwd=tmp_path)


@pytest.mark.parametrize("restart", [False, True], ids=["one-service", "restart-between-steps"])
def test_an_enforced_budget_pauses_before_the_fifth_task_and_resume_continues(
    tmp_path: Path, restart: bool
) -> None:
    runs = make(tmp_path, spec())
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    for n in range(1, 4):
        runs = fresh(runs, restart)
        answer = runs.step(run_id, f"s{n}#1", {"n": n}, usage=USAGE)
        assert answer.accepted
        assert answer.status == "running"
        assert [t.task_id for t in answer.tasks] == [f"s{n + 1}#1"]
    runs = fresh(runs, restart)
    fourth = runs.step(run_id, "s4#1", {"n": 4}, usage=USAGE)
    assert fourth.accepted is True
    assert fourth.status == "paused"
    assert fourth.paused_for == "budget"
    assert fourth.tasks == []
    assert "max_tokens 10000 reached (12000 tokens reported)" in (fourth.error or "")
    assert "--budget-tokens" in fourth.next_action
    assert fourth.spend.tokens == 12_000
    assert fourth.spend.unknown == 0
    assert fourth.spend.cost_usd == pytest.approx(0.04)
    types = [e.type for e in runs.store.events(run_id)]
    assert types.count("task_issued") == 4
    assert types[-3:] == ["run_paused", "task_held", "checkpoint_taken"]
    assert [c.label for c in runs.list_checkpoints(run_id)] == ["paused: budget"]
    assert {s.name: s.status for s in fourth.steps}["s4"] == "completed"
    assert_fold_equals_log(runs, run_id)

    runs = fresh(runs, restart)
    assert runs.get_run(run_id).status == "paused"  # rebuilt from the log
    resumed = runs.resume(run_id, budget={"max_tokens": 20_000})
    assert resumed.status == "running"
    assert resumed.paused_for is None
    assert [t.task_id for t in resumed.tasks] == ["s5#1"]
    attempts = {s.name: s.attempts for s in resumed.steps}
    assert attempts == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1, "s6": 0, "s7": 0}  # nothing re-done
    resumed_event = [e for e in runs.store.events(run_id) if e.type == "run_resumed"][-1]
    assert resumed_event.budget is not None
    assert resumed_event.budget.max_tokens == 20_000
    assert_fold_equals_log(runs, run_id)

    for n in (5, 6, 7):
        runs = fresh(runs, restart)
        answer = runs.step(run_id, f"s{n}#1", {"n": n}, usage=USAGE)
        if n < 7:
            assert answer.status == "running"
    # 7 x 3,000 = 21,000 >= 20,000 was reached by the last step, but nothing follows it: the run completes
    assert answer.status == "completed"
    assert answer.spend.tokens == 21_000
    assert_fold_equals_log(runs, run_id)


def test_resume_with_a_limit_still_reached_holds_the_task_again(tmp_path: Path) -> None:
    runs = make(tmp_path, spec(max_tokens=3000))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    assert runs.step(run_id, "s1#1", {}, usage=USAGE).paused_for == "budget"
    again = runs.resume(run_id, budget={"max_tokens": 3000})
    assert again.status == "paused"
    assert again.paused_for == "budget"
    assert again.tasks == []
    go = runs.resume(run_id, budget={"max_tokens": 100_000})
    assert [t.task_id for t in go.tasks] == ["s2#1"]
    assert_fold_equals_log(runs, run_id)


def test_audit_records_and_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    runs = make(tmp_path, spec("audit", max_cost_usd=0.015))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    runs.step(run_id, "s1#1", {}, usage=USAGE)
    answer = runs.step(run_id, "s2#1", {}, usage=USAGE)
    assert answer.status == "running"
    assert [t.task_id for t in answer.tasks] == ["s3#1"]
    assert answer.budget_warning is not None
    assert "max_cost_usd 0.015 reached" in answer.budget_warning
    assert answer.next_action.startswith("Budget warning (audit")
    answer = runs.step(run_id, "s3#1", {}, usage=USAGE)
    assert [e.type for e in runs.store.events(run_id)].count("budget_reached") == 1  # recorded once
    assert_fold_equals_log(runs, run_id)


def test_unknown_usage_is_unknown_not_zero(tmp_path: Path) -> None:
    runs = make(tmp_path, spec(max_tokens=5000))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    runs.step(run_id, "s1#1", {})
    answer = runs.step(run_id, "s2#1", {}, usage={"output_tokens": 10})
    assert answer.spend.submissions == 2
    assert answer.spend.unknown == 1
    assert answer.spend.tokens == 10
    assert answer.spend.cost_unknown == 2
    first = next(e for e in runs.store.events(run_id) if e.type == "output_submitted")
    assert "usage" not in event_data(first)  # unknown: no key in the record, never zeros
    assert {s.name: s.spend.tokens for s in answer.steps}["s2"] == 10


@pytest.mark.parametrize(
    ("usage", "says"),
    [
        ({"input_tokens": -1}, "usage: input_tokens"),
        ({"tokens": 3}, "allowed: input_tokens"),
        ("lots", "usage"),
    ],
)
def test_bad_usage_is_a_clear_error_and_changes_nothing(tmp_path: Path, usage: Any, says: str) -> None:
    runs = make(tmp_path, spec())
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    with pytest.raises(InvalidArgument, match=says):
        runs.step(run_id, "s1#1", {}, usage=usage)
    with pytest.raises(TooLarge, match="LOOPENGT_MAX_USAGE_BYTES"):
        runs.step(run_id, "s1#1", {}, usage={"model": "x" * 10_000})
    assert [t.task_id for t in runs.get_run(run_id).tasks] == ["s1#1"]


def test_a_per_step_limit_pauses_at_that_step(tmp_path: Path) -> None:
    body = spec(max_tokens=1_000_000)
    body["policy"]["budget"]["steps"] = {"s1": {"max_tokens": 1}}
    body["steps"] = [{"name": "s1", "agent": "a", "verification_gates": ["no"]}]
    body["policy"]["verification_gates"] = [{"name": "no", "condition": "output.ok == true"}]
    runs = make(tmp_path, body)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    answer = runs.step(run_id, "s1#1", {"ok": False}, usage=USAGE)
    assert answer.status == "paused"
    assert "step 's1': max_tokens 1 reached" in (answer.error or "")
    resumed = runs.resume(run_id, hint="set ok")
    assert resumed.status == "paused"  # the step's limit is not raised by a run budget


def test_spans_carry_gen_ai_usage_per_task_and_the_runs_totals(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from loopengt_core.service.telemetry import RunTracer

    body = spec(max_tokens=1_000_000)
    body["steps"] = body["steps"][:2]
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    exporter = InMemorySpanExporter()
    runs = Runs(
        FileStore(tmp_path / "store"), cwd=tmp_path, tracer=RunTracer([SimpleSpanProcessor(exporter)])
    )
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    runs.step(run_id, "s1#1", {}, usage={**USAGE, "cache_read_tokens": 500})
    assert runs.step(run_id, "s2#1", {}).status == "completed"  # no usage: unknown, no attributes
    spans = exporter.get_finished_spans()
    first_task = next(s for s in spans if (s.attributes or {}).get("loopengt.task_id") == "s1#1")
    second = next(s for s in spans if (s.attributes or {}).get("loopengt.task_id") == "s2#1")
    attributes = dict(first_task.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 2000
    assert attributes["gen_ai.usage.output_tokens"] == 1000
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 500
    assert attributes["loopengt.usage.cost_usd"] == pytest.approx(0.01)
    assert attributes["gen_ai.response.model"] == "m"
    assert "gen_ai.usage.input_tokens" not in (second.attributes or {})
    run_span = next(s for s in spans if s.name == "loopengt.run budgeted")
    assert (run_span.attributes or {})["gen_ai.usage.input_tokens"] == 2000


def test_show_and_eval_print_tokens_cost_and_per_step_spend(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    loopengt = Path(sys.executable).with_name("loopengt")
    runs = make(tmp_path, spec("audit", max_tokens=1_000_000))
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    runs.step(run_id, "s1#1", {}, usage=USAGE)
    runs.step(run_id, "s2#1", {})

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(loopengt), *args, "--store", "store"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    shown = cli("show", run_id)
    assert "spend: 3,000 tokens, $0.01 (1 of 2 submissions reported no usage)" in shown
    assert "step s1: completed (1 attempt, 3,000 tokens, $0.01)" in shown
    assert json.loads(cli("show", run_id, "--json"))["spend"]["unknown"] == 1
    evaluated = cli("eval", run_id)
    assert "3,000 tokens" in evaluated
    metrics = json.loads(cli("eval", run_id, "--json"))
    assert metrics["spend"]["tokens"] == 3000
    assert metrics["attempts"][0]["spend"]["tokens"] == 3000


HEADLESS_AGENT = """
import json, os, sys
task = json.load(sys.stdin)
n = int(task["task_id"].split("#")[0][1:])
if n == 1:
    with open(os.environ["LOOPENGT_USAGE_FILE"], "w") as f:
        json.dump({"input_tokens": 2000, "output_tokens": 1000, "cost_usd": 0.02}, f)
elif n == 2:
    with open(os.environ["LOOPENGT_USAGE_FILE"], "w") as f:
        f.write("not json")
print(json.dumps({"done": n}))
"""


def test_headless_run_reads_usage_the_agent_writes_to_its_usage_file(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    body = spec("audit", max_tokens=1_000_000)
    body["steps"] = body["steps"][:3]
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    (tmp_path / "agent.py").write_text(HEADLESS_AGENT, encoding="utf-8")
    loopengt = Path(sys.executable).with_name("loopengt")
    done = subprocess.run(
        [str(loopengt), "run", "loop.yaml", "--agent", f"{sys.executable} agent.py", "--store", "store"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage unknown: LOOPENGT_USAGE_FILE does not hold JSON" in done.stdout + done.stderr
    store = FileStore(tmp_path / "store")
    (run_id,) = list(store.list_runs())
    view = run_view(project_run(store.events(run_id)))
    assert view.spend.tokens == 3000
    assert view.spend.cost_usd == pytest.approx(0.02)
    assert view.spend.unknown == 2
    assert json.dumps(view.spend.model_dump())  # plain JSON


class Clock:
    """A clock the test moves: the wall budget is checked against it whenever the run is touched."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) - timedelta(seconds=120)  # a service with the real clock agrees

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.mark.parametrize("touch", ["get_run", "step", "resume"])
@pytest.mark.parametrize("restart", [False, True], ids=["one-service", "restart"])
def test_max_wall_seconds_pauses_whenever_the_run_is_touched(
    tmp_path: Path, touch: str, restart: bool
) -> None:
    clock = Clock()
    make(tmp_path, spec(max_wall_seconds=60))
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path, clock=clock)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    clock.advance(61)
    if restart:
        runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path, clock=clock)
    if touch == "get_run":
        view: Any = runs.get_run(run_id)
    elif touch == "step":  # the open task's submission is accepted; the next task is held
        view = runs.step(run_id, "s1#1", {}, usage=USAGE)
        assert view.accepted is True
        assert {s.name: s.status for s in view.steps}["s1"] == "completed"
    else:
        view = runs.resume(run_id)
    assert view.status == "paused"
    assert view.paused_for == "budget"
    assert "max_wall_seconds 60 reached (61 s)" in (view.error or "")
    assert "--budget-seconds" in (view.error or "")
    # a resume of a run whose (unraised) limit is reached may find it paused by an earlier read, resume
    # it and pause it again: each pause with its checkpoint
    pauses = [e.type for e in runs.store.events(run_id)].count("run_paused")
    assert pauses == (1 if touch != "resume" or not restart else 2)
    assert {c.label for c in runs.list_checkpoints(run_id)} == {"paused: budget"}
    assert runs.get_run(run_id).status == "paused"  # touched again: still paused, not paused again
    assert [e.type for e in runs.store.events(run_id)].count("run_paused") == pauses
    resumed = runs.resume(run_id, budget={"max_wall_seconds": 3600})
    assert resumed.status == "running"
    assert [t.task_id for t in resumed.tasks] == (["s2#1"] if touch == "step" else ["s1#1"])
    assert_fold_equals_log(runs, run_id)


def test_an_audit_wall_budget_warns_once_when_touched_and_the_run_goes_on(tmp_path: Path) -> None:
    clock = Clock()
    make(tmp_path, spec("audit", max_wall_seconds=60))
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path, clock=clock)
    run_id = runs.start_run(spec_path="loop.yaml").run_id
    clock.advance(90)
    view = runs.get_run(run_id)
    assert view.status == "running"
    assert "max_wall_seconds 60 reached" in (view.budget_warning or "")
    runs.get_run(run_id)
    assert [t.task_id for t in runs.step(run_id, "s1#1", {}).tasks] == ["s2#1"]
    assert [e.type for e in runs.store.events(run_id)].count("budget_reached") == 1
    assert_fold_equals_log(runs, run_id)
