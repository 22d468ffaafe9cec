"""Design from a goal, as a loop: the `design` template, its two gates, `loopengt design`, and MCP."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp_helpers import ok, run_cli, stdio_client, step

from loopengt_core.engine.dryrun import dry_run, example
from loopengt_core.engine.validation import load_spec
from loopengt_core.model.events import GateFailed, TaskIssued
from loopengt_core.service.catalog import template_names, template_text
from loopengt_core.service.runs import Runs
from loopengt_core.service.specfiles import load_spec_file
from loopengt_core.store.files import FileStore

GOAL = "add a --verbose flag and make the tests pass"

# The first draft has two mistakes (an agent and a gate that do not exist); a draft given feedback is right.
SCRIPTED_DESIGNER = textwrap.dedent(
    '''\
    import json, sys

    task = json.load(sys.stdin)
    goal = task["input"]["context"]["goal"]
    agent, gate = ("coder", "tests_pass") if task.get("feedback") else ("coderr", "tests_passs")
    spec = f"""name: verbose-flag
    goal: {json.dumps(goal)}
    pattern: sequential
    agents:
      - name: coder
    steps:
      - name: implement
        agent: {agent}
        prompt_template: "Add the flag. Feedback: {{feedback}}"
        output_schema: {{type: object, required: [summary], properties: {{summary: {{type: string}}}}}}
        verification_gates: [{gate}]
    policy:
      max_turns: 6
      verification_gates:
        - name: tests_pass
          command: ["pytest", "-q"]
    """
    print(json.dumps({"spec": spec, "notes": f"attempt {task['attempt']}"}))
    '''
)

THREE_STEPS = textwrap.dedent(
    """\
    name: three
    goal: Plan, build and check
    agents: [{name: a}]
    steps:
      - {name: plan, agent: a}
      - {name: build, agent: a}
      - {name: check, agent: a}
    policy:
      max_turns: MAX
    """
)


def test_design_feeds_back_both_mistakes_and_writes_the_second_draft(tmp_path: Path) -> None:
    """The acceptance test of issue 20: both mistakes of the first draft come back with their locations,
    the second draft passes both gates and is written where asked, and it validates."""
    (tmp_path / "scripted_designer.py").write_text(SCRIPTED_DESIGNER, encoding="utf-8")
    done = run_cli("design", GOAL, "--agent", "python3 scripted_designer.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote loop.yaml: valid: loop 'verbose-flag'" in done.stdout

    spec, _ = load_spec_file(tmp_path / "loop.yaml")
    assert spec.goal == GOAL
    assert spec.steps[0].agent == "coder"
    assert spec.steps[0].verification_gates == ["tests_pass"]

    store = FileStore(tmp_path / ".loopengt")
    (run_id,) = store.list_runs()
    events = store.events(run_id)
    failed = [e for e in events if isinstance(e, GateFailed) and e.gate == "spec_valid"]
    assert len(failed) == 1
    feedback = failed[0].feedback or ""
    assert "steps[0].agent: unknown agent 'coderr' (agents: coder)" in feedback
    assert "steps[0].verification_gates[0]: unknown gate 'tests_passs'" in feedback
    tasks = [e for e in events if isinstance(e, TaskIssued)]
    assert [t.task_id for t in tasks] == ["draft#1", "draft#2"]
    assert "steps[0].agent" in (tasks[1].feedback or "")
    assert "steps[0].verification_gates[0]" in (tasks[1].feedback or "")


def test_design_refuses_to_overwrite_before_any_run_starts(tmp_path: Path) -> None:
    (tmp_path / "scripted_designer.py").write_text(SCRIPTED_DESIGNER, encoding="utf-8")
    (tmp_path / "loop.yaml").write_text("mine\n", encoding="utf-8")
    refused = run_cli("design", GOAL, "--agent", "python3 scripted_designer.py", cwd=tmp_path)
    assert refused.returncode == 1
    assert "loop.yaml exists; pass --force" in refused.stderr
    assert not (tmp_path / ".loopengt").exists()
    assert (tmp_path / "loop.yaml").read_text(encoding="utf-8") == "mine\n"

    written = run_cli(
        "design", GOAL, "--agent", "python3 scripted_designer.py", "--output", "designed.yaml", cwd=tmp_path
    )
    assert written.returncode == 0, written.stderr
    load_spec_file(tmp_path / "designed.yaml")


def _draft_task(view: Any) -> Any:
    (task,) = view.tasks
    assert task.step == "draft"
    return task


def test_dry_run_gate_says_why_a_valid_flow_cannot_complete(tmp_path: Path) -> None:
    """A spec can validate and still never complete: the dry run finds it and the feedback says where."""
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    view = runs.start_run(template="design", inputs={"goal": "plan, build and check"})
    first = _draft_task(view)
    assert "plan, build and check" in first.instructions
    answer = runs.step(view.run_id, first.task_id, {"spec": THREE_STEPS.replace("MAX", "2")})
    results = {r.name: r for r in answer.gate_results}
    assert results["spec_valid"].passed is True
    assert results["dry_run_completes"].passed is False
    feedback = results["dry_run_completes"].feedback or ""
    assert "max_turns 2 reached" in feedback
    assert "steps taken: plan -> build" in feedback

    second = _draft_task(answer)
    assert "max_turns 2 reached" in (second.feedback or "")
    done = runs.step(view.run_id, second.task_id, {"spec": THREE_STEPS.replace("MAX", "3")})
    assert done.status == "completed"
    assert load_spec(done.final_output["spec"]).name == "three"


def test_a_spec_submitted_as_an_object_or_missing_is_judged_too(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    view = runs.start_run(template="design", inputs={"goal": "anything"})
    answer = runs.step(view.run_id, _draft_task(view).task_id, {"notes": "forgot it", "spec": None})
    assert answer.status == "running"
    feedback = answer.tasks[0].feedback or ""
    assert "output.spec" in feedback
    spec = load_spec(THREE_STEPS.replace("MAX", "5")).model_dump(mode="json", exclude_defaults=True)
    done = runs.step(view.run_id, answer.tasks[0].task_id, {"spec": spec})
    assert done.status == "completed"


@pytest.mark.parametrize("name", template_names())
def test_every_built_in_template_completes_a_dry_run(name: str) -> None:
    ended = dry_run(load_spec(template_text(name)))
    assert ended.completed, ended.text()


def test_dry_run_takes_each_route_and_visits_each_worker() -> None:
    custom = load_spec(
        textwrap.dedent(
            """\
            name: routed
            pattern: custom
            agents: [{name: a}]
            steps:
              - name: review
                agent: a
                output_schema: {type: object, required: [verdict], properties: {verdict: {enum: [fix, ok]}}}
                routes: {field: verdict, map: {fix: fix, ok: ship}}
              - {name: fix, agent: a, next: [review]}
              - {name: ship, run: ["make", "release"]}
            policy: {max_turns: 10}
            """
        )
    )
    ended = dry_run(custom)
    assert ended.completed, ended.text()
    assert ended.path == ["review", "fix", "review", "ship (command, not run)"]


def test_example_values_match_their_schema() -> None:
    schema = {
        "type": "object",
        "required": ["n", "s", "tags", "kind"],
        "properties": {
            "n": {"type": "integer", "minimum": 3},
            "s": {"type": "string", "minLength": 12},
            "tags": {"type": "array", "minItems": 2, "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "optional": {"type": "string"},
        },
    }
    value = example(schema)
    assert value["n"] == 3
    assert len(value["s"]) >= 12
    assert len(value["tags"]) == 2
    assert value["kind"] == "a"
    assert "optional" not in value


@pytest.mark.anyio
async def test_design_over_mcp_is_start_run_with_the_design_template(tmp_path: Path) -> None:
    async with stdio_client(tmp_path / "store", tmp_path, "auto") as client:
        prompt = await client.get_prompt("design_loop", {"goal": GOAL})
        content = prompt.messages[0].content
        assert isinstance(content, types.TextContent)
        assert GOAL in content.text
        assert '`start_run` with `template: "design"`' in content.text
        view = ok(await client.call_tool("start_run", {"template": "design", "inputs": {"goal": GOAL}}))
        (task,) = view["tasks"]
        assert GOAL in task["instructions"]
        bad = THREE_STEPS.replace("MAX", "5").replace("agent: a}", "agent: b}", 1)
        answer = ok(await step(client, view["run_id"], task["task_id"], {"spec": bad}))
        (retry,) = answer["tasks"]
        assert "steps[0].agent: unknown agent 'b' (agents: a)" in retry["feedback"]
        good = THREE_STEPS.replace("MAX", "5")
        answer = ok(await step(client, view["run_id"], retry["task_id"], {"spec": good}))
        assert answer["status"] == "completed"
        assert json.loads(json.dumps(answer["final_output"]))["spec"] == good


def test_a_flow_that_never_ends_is_cut_off_and_told_briefly() -> None:
    endless = load_spec(
        {
            "name": "endless",
            "pattern": "custom",
            "agents": [{"name": "a"}],
            "steps": [{"name": "a", "agent": "a", "next": ["b"]}, {"name": "b", "agent": "a", "next": ["a"]}],
            "policy": {"max_turns": 5000},
        }
    )
    ended = dry_run(endless)
    assert not ended.completed
    text = ended.text()
    assert "did not end: it ran 1000 tasks and commands without ending" in text
    assert "... 980 more ..." in text
    assert len(text) < 500


def test_example_values_stay_small_for_a_schema_built_to_explode() -> None:
    schema: dict[str, Any] = {"type": "array", "minItems": 10, "items": {}}
    inner = schema
    for _ in range(15):  # 10 ** 16 values if built in full
        inner["items"] = {"type": "array", "minItems": 10, "items": {}}
        inner = inner["items"]
    assert len(json.dumps(example(schema))) < 100_000
