"""The runs service on a real file store: starting runs, the `step` contract, limits, ids, forks, restarts.

No mocks: every test writes a real store under tmp_path, and the cross-process test drives one run from
two Python processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopengt_core.model.errors import Conflict, InvalidArgument, NotFound, TooLarge
from loopengt_core.model.events import event_data
from loopengt_core.model.state import project_run
from loopengt_core.service.async_submit import quick
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

SPEC: dict[str, Any] = {
    "name": "three-steps",
    "goal": "do three things",
    "pattern": "sequential",
    "context": {"lang": "python", "level": 1},
    "inputs": [{"name": "ticket", "description": "what to work on"}],
    "agents": [{"name": "a"}],
    "steps": [
        {
            "name": "plan",
            "agent": "a",
            "prompt_template": "Plan {ticket} in {lang}",
            "verification_gates": ["ok"],
        },
        {"name": "execute", "agent": "a"},
        {"name": "review", "agent": "a"},
    ],
    "policy": {"verification_gates": [{"name": "ok", "condition": "output.ok == `true`", "feedback": "ok!"}]},
}


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> FileStore:
    return FileStore(store_dir)


@pytest.fixture
def runs(store: FileStore, tmp_path: Path) -> Runs:
    return Runs(store, cwd=tmp_path)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def count(store: FileStore, run_id: str) -> int:
    return len(store.events(run_id))


# --- start_run ------------------------------------------------------------------------------------


def test_start_run_needs_exactly_one_source(runs: Runs, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="exactly one of spec_path, template or spec"):
        runs.start_run()
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC))
    with pytest.raises(InvalidArgument, match=r"got spec_path, spec"):
        runs.start_run(spec_path="loop.yaml", spec=SPEC)
    with pytest.raises(InvalidArgument, match=r"got template, spec"):
        runs.start_run(template="planner_executor", spec=SPEC)
    assert runs.list_runs() == []


def test_start_run_from_a_path_a_template_yaml_text_or_an_object(runs: Runs, tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC))
    inputs = {"ticket": "T-1"}
    by_path = runs.start_run(spec_path="loop.yaml", inputs=inputs)  # relative to the working directory
    by_text = runs.start_run(spec=yaml.safe_dump(SPEC), inputs=inputs)
    by_json = runs.start_run(spec=json.dumps(SPEC), inputs=inputs)
    by_object = runs.start_run(spec=SPEC, inputs=inputs)
    for view in (by_path, by_text, by_json, by_object):
        assert view.loop == "three-steps"
        assert [t.task_id for t in view.tasks] == ["plan#1"]
        assert "Plan T-1 in python" in view.tasks[0].instructions
    template = runs.start_run(template="planner_executor")
    assert template.loop == "planner-executor"
    assert template.tasks[0].task_id == "plan#1"
    with pytest.raises(NotFound, match="unknown template"):
        runs.start_run(template="../etc/passwd")
    assert len(runs.list_runs()) == 5


def test_inputs_are_merged_into_the_context(runs: Runs) -> None:
    view = runs.start_run(spec=SPEC, inputs={"level": 2, "ticket": "T-9", "nested": {"a": [1]}})
    task = view.tasks[0]
    assert task.input["context"] == {"lang": "python", "level": 2, "ticket": "T-9", "nested": {"a": [1]}}
    assert task.input["goal"] == "do three things"
    assert "Plan T-9 in python" in task.instructions
    with pytest.raises(InvalidArgument, match="inputs must be an object"):
        runs.start_run(spec=SPEC, inputs=["ticket"])  # type: ignore[arg-type]


def test_required_inputs_and_defaults(runs: Runs) -> None:
    spec = dict(SPEC, inputs=[{"name": "ticket", "required": True}, {"name": "team", "default": "core"}])
    with pytest.raises(InvalidArgument, match="missing required input: ticket"):
        runs.start_run(spec=spec)
    view = runs.start_run(spec=spec, inputs={"ticket": "T-2"})
    assert view.tasks[0].input["context"]["team"] == "core"


def test_run_id_reuse(runs: Runs, store: FileStore) -> None:
    first = runs.start_run(spec=SPEC, run_id="my-run", inputs={"ticket": "x"})
    assert first.run_id == "my-run"
    runs.step("my-run", "plan#1", {"ok": True})
    before = count(store, "my-run")
    again = runs.start_run(spec=SPEC, run_id="my-run", inputs={"ticket": "x"})
    assert again.run_id == "my-run"
    assert again.turn == 1
    assert [t.task_id for t in again.tasks] == ["execute#1"]
    assert count(store, "my-run") == before
    other = dict(SPEC, goal="something else")
    with pytest.raises(Conflict, match="run 'my-run' exists with a different spec"):
        runs.start_run(spec=other, run_id="my-run")
    assert count(store, "my-run") == before
    # a fresh service (another process, a restart) sees the same
    fresh = Runs(FileStore(store.root))
    assert fresh.start_run(spec=SPEC, run_id="my-run").turn == 1
    with pytest.raises(Conflict):
        fresh.start_run(spec=other, run_id="my-run")


# --- step -----------------------------------------------------------------------------------------


def test_step_is_idempotent_per_task(runs: Runs, store: FileStore) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    failed = runs.step(run_id, "plan#1", {"ok": False})
    n = count(store, run_id)
    again = runs.step(run_id, "plan#1", {"ok": False})
    assert count(store, run_id) == n
    assert (again.accepted, again.gate_results) == (failed.accepted, failed.gate_results)
    assert [(g.name, g.passed, g.feedback) for g in again.gate_results] == [("ok", False, "ok!")]
    assert [t.task_id for t in again.tasks] == ["plan#2"]
    passed = runs.step(run_id, "plan#2", {"ok": True})
    n = count(store, run_id)
    again = runs.step(run_id, "plan#2", {"ok": True})
    assert count(store, run_id) == n
    assert again.gate_results == passed.gate_results
    assert again.turn == passed.turn == 2
    # outcome and error are part of the submission too
    runs.step(run_id, "execute#1", None, outcome="failure", error="flaky")
    n = count(store, run_id)
    assert runs.step(run_id, "execute#1", None, outcome="failure", error="flaky").accepted
    assert count(store, run_id) == n
    with pytest.raises(Conflict, match="different output"):
        runs.step(run_id, "execute#1", None, outcome="failure", error="another reason")
    # still idempotent once the run has ended
    runs.step(run_id, "execute#2", "done")
    final = runs.step(run_id, "review#1", "lgtm")
    assert final.status == "completed"
    n = count(store, run_id)
    assert runs.step(run_id, "review#1", "lgtm").status == "completed"
    assert runs.step(run_id, "plan#1", {"ok": False}).gate_results == failed.gate_results
    assert count(store, run_id) == n


def test_the_answer_to_a_repeated_submission_does_not_depend_on_how_old_it_is(runs: Runs) -> None:
    # The state keeps the answers of recent tasks; older ones are rebuilt from the log. Both must agree,
    # including a person's later answer to an approval gate.
    spec = {
        "name": "old-answers",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "p", "agent": "a", "verification_gates": ["signoff"]},
            {"name": "q", "agent": "a", "verification_gates": ["one"]},
        ],
        "policy": {
            "max_turns": 200,
            "retry": {"max_retries": 100},
            "stuck": False,  # 69 identical failures push p#1's answer out of the state: not a stuck loop here
            "verification_gates": [
                {"name": "signoff", "approval": True},
                {"name": "one", "condition": "output == `1`"},
            ],
        },
    }
    run_id = runs.start_run(spec=spec).run_id
    runs.step(run_id, "p#1", "x")
    runs.approve(run_id, approved=True, comment="fine")
    recent = runs.step(run_id, "p#1", "x").gate_results
    assert [(g.name, g.passed, g.feedback) for g in recent] == [("signoff", True, "fine")]
    for i in range(1, 70):  # enough later tasks that p#1's answer is no longer kept in the state
        runs.step(run_id, f"q#{i}", 0)
    assert "p#1" not in runs.kernel.read(run_id).state.answers
    assert runs.step(run_id, "p#1", "x").gate_results == recent
    with pytest.raises(Conflict, match="different output"):
        runs.step(run_id, "p#1", "y")


def test_a_different_output_for_a_closed_task_is_a_conflict(runs: Runs, store: FileStore) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    runs.step(run_id, "plan#1", {"ok": True})
    n = count(store, run_id)
    with pytest.raises(
        Conflict, match=r"task 'plan#1' was already submitted with a different output; open tasks: execute#1"
    ):
        runs.step(run_id, "plan#1", {"ok": True, "more": 1})
    assert count(store, run_id) == n


def test_an_unknown_task_is_not_found_and_names_the_open_tasks(runs: Runs, store: FileStore) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    n = count(store, run_id)
    with pytest.raises(NotFound, match=rf"run '{run_id}' has no open task 'review#1'; open tasks: plan#1"):
        runs.step(run_id, "review#1", "x")
    with pytest.raises(NotFound, match="open tasks: plan#1"):
        runs.step(run_id, "plan#2", "x")
    with pytest.raises(InvalidArgument, match="task_id"):
        runs.step(run_id, "", "x")
    with pytest.raises(InvalidArgument, match="outcome"):
        runs.step(run_id, "plan#1", "x", outcome="maybe")
    with pytest.raises(NotFound, match="no run 'nope'"):
        runs.step("nope", "plan#1", "x")
    assert count(store, run_id) == n


def test_inline_specs_may_not_run_commands_unless_allowed(store: FileStore, tmp_path: Path) -> None:
    runs = Runs(store, cwd=tmp_path)
    with_step = dict(SPEC, steps=[*SPEC["steps"], {"name": "test", "run": ["python", "-c", "pass"]}])
    with_gate = dict(
        SPEC,
        policy={
            "verification_gates": [
                *SPEC["policy"]["verification_gates"],
                {"name": "tests", "command": "python -m pytest -q"},
            ]
        },
    )
    with_gate["steps"] = [dict(SPEC["steps"][0], verification_gates=["ok", "tests"]), *SPEC["steps"][1:]]
    for spec in (with_step, with_gate):
        with pytest.raises(InvalidArgument, match="--allow-inline-commands"):
            runs.start_run(spec=spec, inputs={"ticket": "t"})
        with pytest.raises(InvalidArgument, match="--allow-inline-commands"):
            runs.start_run(spec=yaml.safe_dump(spec), inputs={"ticket": "t"})
    assert runs.list_runs() == []
    # a spec file on disk, or a built-in template, may
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(with_gate))
    assert runs.start_run(spec_path="loop.yaml", inputs={"ticket": "t"}).status == "running"
    assert runs.start_run(template="fix_tests").status == "running"
    allowed = Runs(store, cwd=tmp_path, allow_inline_commands=True)
    assert allowed.start_run(spec=with_gate, inputs={"ticket": "t"}).status == "running"


def test_an_output_over_the_limit_is_refused_and_nothing_is_stored(store: FileStore, tmp_path: Path) -> None:
    runs = Runs(store, cwd=tmp_path, max_output_bytes=1000)
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    n = count(store, run_id)
    with pytest.raises(TooLarge, match="the limit is 1000 bytes"):
        runs.step(run_id, "plan#1", {"ok": True, "blob": "x" * 2000})
    assert count(store, run_id) == n
    view = runs.get_run(run_id)
    assert [t.task_id for t in view.tasks] == ["plan#1"]
    assert view.turn == 0
    assert runs.step(run_id, "plan#1", {"ok": True, "blob": "x" * 500}).turn == 1


def test_outputs_that_are_not_plain_json_are_refused_or_stored_as_json(runs: Runs, store: FileStore) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    n = count(store, run_id)
    for bad in (float("nan"), {"x": float("inf")}, {1, 2}, "\ud800"):
        with pytest.raises(InvalidArgument):
            runs.step(run_id, "plan#1", bad)
    assert count(store, run_id) == n
    # Python values JSON has no form for (tuples, int keys) are stored as their JSON: the live state
    # must stay the fold of the log
    runs.step(run_id, "plan#1", {"ok": True, "pair": (1, 2), "by_id": {7: "seven"}})
    live = runs.kernel.read(run_id).state
    assert live.steps["plan"].output == {"ok": True, "pair": [1, 2], "by_id": {"7": "seven"}}
    assert project_run(store.events(run_id)).model_dump() == live.model_dump()
    assert runs.step(run_id, "plan#1", {"ok": True, "pair": [1, 2], "by_id": {"7": "seven"}}).accepted
    # the same for inputs, which become the context
    other = runs.start_run(spec=SPEC, inputs={"ticket": ("T", 1), "ids": {3: "c"}}).run_id
    live = runs.kernel.read(other).state
    assert live.context["ticket"] == ["T", 1]
    assert live.context["ids"] == {"3": "c"}
    assert project_run(store.events(other)).model_dump() == live.model_dump()
    with pytest.raises(InvalidArgument, match="inputs must be plain JSON"):
        runs.start_run(spec=SPEC, inputs={"ticket": float("nan")})


def test_a_transition_that_fails_midway_leaves_the_run_as_its_log_has_it(
    runs: Runs, store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A recursive output_schema and a deeply nested output make the schema check itself fail (Python's
    # recursion limit) after the submission was already applied to the cached state. Whatever the
    # error, the run must stay the fold of its log: the task still open, the turn not counted.
    # (The depth limit, 64 by default, refuses such an output up front: raised here to reach the check.)
    monkeypatch.setenv("LOOPENGT_MAX_JSON_DEPTH", "2000")
    node = {"type": "object", "properties": {"c": {"$ref": "#/$defs/node"}}}
    spec = {
        "name": "deep",
        "agents": [{"name": "a"}],
        "steps": [
            {
                "name": "plan",
                "agent": "a",
                "output_schema": {"$defs": {"node": node}, "$ref": "#/$defs/node"},
            },
            {"name": "execute", "agent": "a"},
        ],
    }
    run_id = runs.start_run(spec=spec).run_id
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(400):
        cursor["c"] = {}
        cursor = cursor["c"]
    with contextlib.suppress(RecursionError):
        runs.step(run_id, "plan#1", deep)
    live = runs.kernel.read(run_id).state
    assert live.model_dump() == project_run(store.events(run_id)).model_dump()
    view = runs.get_run(run_id)
    if view.turn == 0:  # the submission failed: the task is still open and takes another output
        assert [t.task_id for t in view.tasks] == ["plan#1"]
        view = runs.step(run_id, "plan#1", {"c": {}})
        assert [t.task_id for t in view.tasks] == ["execute#1"]


def test_concurrent_clients_never_lose_or_double_an_event(store_dir: Path, tmp_path: Path) -> None:
    spec = {
        "name": "fan",
        "pattern": "parallel_fan_out",
        "agents": [{"name": "a"}],
        "steps": [
            *({"name": f"s{i}", "agent": "a"} for i in range(6)),
            {"name": "join", "agent": "a", "dependencies": [f"s{i}" for i in range(6)]},
        ],
        "policy": {"max_concurrency": 6},
    }
    run_id = Runs(FileStore(store_dir), cwd=tmp_path).start_run(spec=spec).run_id
    clients = [Runs(FileStore(store_dir), cwd=tmp_path) for _ in range(6)]
    for client in clients:
        client.get_run(run_id)  # each has the run cached, as a long-lived server would
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def submit(client: Runs, task_id: str) -> None:
        barrier.wait()
        try:
            client.step(run_id, task_id, {"from": task_id})
        except BaseException as exc:
            errors.append(exc)

    # every task from its own client, and s0#1 a second time, identically, from every other client
    threads = [threading.Thread(target=submit, args=(c, f"s{i}#1")) for i, c in enumerate(clients)]
    threads += [threading.Thread(target=submit, args=(c, "s0#1")) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    events = FileStore(store_dir).events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    submitted = [event_data(e)["task_id"] for e in events if e.type == "output_submitted"]
    assert sorted(submitted) == [f"s{i}#1" for i in range(6)]
    for client in clients:
        view = client.get_run(run_id)
        assert view.turn == 6
        assert [t.task_id for t in view.tasks] == ["join#1"]
        assert client.kernel.read(run_id).state.model_dump() == project_run(events).model_dump()


@pytest.mark.parametrize(
    "bad", ["../../x", "../x", "a/b", "A", "", ".hidden", "x" * 65, "run id", "-x", "x\n"]
)
def test_malformed_run_ids_are_refused_and_nothing_leaves_the_store(
    runs: Runs, tmp_path: Path, store_dir: Path, bad: str
) -> None:
    good = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    before = files_under(tmp_path)
    calls: list[Callable[[], object]] = [
        lambda: runs.start_run(spec=SPEC, run_id=bad, inputs={"ticket": "t"}),
        lambda: runs.get_run(bad),
        lambda: runs.step(bad, "plan#1", {"ok": True}),
        lambda: runs.cancel_run(bad),
        lambda: runs.checkpoint(bad),
        lambda: runs.resume(bad),
        lambda: runs.approve(bad),
        lambda: runs.trace(bad),
        lambda: runs.resume(good, checkpoint_id=bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="invalid"):
            call()
    after = files_under(tmp_path)
    assert after == before
    assert all(p.startswith("store") for p in after)
    assert not (tmp_path.parent / "x").exists()


def test_unknown_runs_and_checkpoints_are_not_found(runs: Runs) -> None:
    with pytest.raises(NotFound, match="no run 'ghost'"):
        runs.get_run("ghost")
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    with pytest.raises(NotFound):
        runs.resume(run_id, checkpoint_id="cp-9")


# --- checkpoints and forks ------------------------------------------------------------------------


def test_checkpoint_and_fork(runs: Runs, store: FileStore) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    runs.step(run_id, "plan#1", {"ok": False})
    runs.step(run_id, "plan#2", {"ok": True, "plan": "A"})
    point = runs.checkpoint(run_id, label="after plan")
    assert (point.checkpoint_id, point.label, point.seq) == ("cp-1", "after plan", count(store, run_id))
    at_checkpoint = runs.kernel.read(run_id).state.model_copy(deep=True)
    assert [c.checkpoint_id for c in runs.list_checkpoints(run_id)] == ["cp-1"]

    # the original goes on along its own path
    runs.step(run_id, "execute#1", "original execution")
    original = runs.step(run_id, "review#1", "original review")
    assert original.status == "completed"
    assert original.final_output == "original review"

    fork = runs.resume(run_id, checkpoint_id="cp-1")
    assert fork.run_id != run_id
    assert fork.parent_run_id == run_id
    assert fork.status == "running"
    assert fork.turn == at_checkpoint.turn == 2
    assert [t.task_id for t in fork.tasks] == ["execute#1"]
    forked = runs.kernel.read(fork.run_id).state
    for name in ("turn", "context", "goal", "loop", "last_step", "final_output", "error"):
        assert getattr(forked, name) == getattr(at_checkpoint, name), name
    # the same steps and outputs; `output_seq` names the event recording an output in the parent's log only
    assert {k: s.model_dump(exclude={"output_seq"}) for k, s in forked.steps.items()} == {
        k: s.model_dump(exclude={"output_seq"}) for k, s in at_checkpoint.steps.items()
    }
    assert at_checkpoint.steps["plan"].output_seq is not None
    assert forked.steps["plan"].output_seq is None
    assert {k: t.model_dump(exclude={"expires_at"}) for k, t in forked.tasks.items()} == {
        k: t.model_dump(exclude={"expires_at"}) for k, t in at_checkpoint.tasks.items()
    }
    assert store.events(fork.run_id)[0].type == "run_forked"

    runs.step(fork.run_id, "execute#1", "forked execution")
    done = runs.step(fork.run_id, "review#1", "forked review")
    assert done.status == "completed"
    assert done.final_output == "forked review"
    assert runs.get_run(run_id).final_output == "original review"
    assert [s.model_dump() for s in runs.get_run(run_id).steps] == [s.model_dump() for s in done.steps]
    assert (
        project_run(store.events(fork.run_id)).model_dump()
        == runs.kernel.read(fork.run_id).state.model_dump()
    )

    # a second fork from the same checkpoint is another independent run
    second = runs.resume(run_id, checkpoint_id="cp-1")
    assert second.run_id not in (run_id, fork.run_id)
    assert [t.task_id for t in second.tasks] == ["execute#1"]
    listed = [r.run_id for r in runs.list_runs()]
    assert set(listed) == {run_id, fork.run_id, second.run_id}
    assert listed[0] == second.run_id  # newest first
    assert [r.run_id for r in runs.list_runs(status="completed")] == [fork.run_id, run_id]


def test_checkpoint_of_an_ended_run_can_be_forked_only_to_its_end(runs: Runs) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    runs.cancel_run(run_id, "stop")
    point = runs.checkpoint(run_id)
    fork = runs.resume(run_id, checkpoint_id=point.checkpoint_id)
    assert fork.status == "cancelled"
    assert fork.parent_run_id == run_id


# --- restarts and other processes -----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from loopengt_core.service.runs import Runs
    from loopengt_core.store.files import FileStore

    store_dir, run_id, task_id, output = sys.argv[1:5]
    runs = Runs(FileStore(store_dir))
    answer = runs.step(run_id, task_id, json.loads(output))
    print(json.dumps({"status": answer.status, "tasks": [t.task_id for t in answer.tasks], "turn": answer.turn}))
    """
)


def child_step(store_dir: Path, run_id: str, task_id: str, output: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(store_dir), run_id, task_id, json.dumps(output)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_run_continued_by_another_process_completes(runs: Runs, store: FileStore, store_dir: Path) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    runs.step(run_id, "plan#1", {"ok": True})
    assert child_step(store_dir, run_id, "execute#1", "from the child") == {
        "status": "running",
        "tasks": ["review#1"],
        "turn": 2,
    }
    # this process's cached state catches up with what the other process appended
    view = runs.get_run(run_id)
    assert [t.task_id for t in view.tasks] == ["review#1"]
    assert view.turn == 2
    view = runs.step(run_id, "review#1", "from the parent")
    assert view.status == "completed"
    assert [e.seq for e in store.events(run_id)] == list(range(1, count(store, run_id) + 1))
    assert project_run(store.events(run_id)).model_dump() == runs.kernel.read(run_id).state.model_dump()
    # and the child sees the end too (the same submission again is answered, not refused)
    assert child_step(store_dir, run_id, "review#1", "from the parent")["status"] == "completed"


def test_a_fresh_service_on_the_same_store_continues_a_run(store_dir: Path, tmp_path: Path) -> None:
    first = Runs(FileStore(store_dir, snapshot_every=3), cwd=tmp_path, snapshot_every=3)
    run_id = first.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    first.step(run_id, "plan#1", {"ok": False})
    first.step(run_id, "plan#2", {"ok": True})
    state = first.kernel.read(run_id).state.model_dump()
    del first  # a restart: nothing survives but the store

    second = Runs(FileStore(store_dir, snapshot_every=3), cwd=tmp_path, snapshot_every=3)
    assert second.kernel.read(run_id).state.model_dump() == state
    assert [r.run_id for r in second.list_runs()] == [run_id]
    view = second.resume(run_id)
    assert [t.task_id for t in view.tasks] == ["execute#1"]
    # idempotency holds across the restart
    n = len(second.trace(run_id))
    assert second.step(run_id, "plan#1", {"ok": False}).gate_results[0].passed is False
    assert len(second.trace(run_id)) == n
    second.step(run_id, "execute#1", "e")
    assert second.step(run_id, "review#1", "r").status == "completed"
    third = Runs(FileStore(store_dir), cwd=tmp_path)
    assert third.get_run(run_id).status == "completed"
    assert third.get_run(run_id).final_output == "r"


def test_trace_shape(runs: Runs) -> None:
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    runs.step(run_id, "plan#1", {"ok": True, "plan": "p"})
    events = runs.trace(run_id)
    assert [e.type for e in events] == [
        "run_started",
        "task_issued",
        "output_submitted",
        "gate_passed",
        "step_completed",
        "task_issued",
    ]
    assert event_data(events[2])["output"] == {"ok": True, "plan": "p"}
    assert all(e.at.endswith("Z") for e in events)
    assert [e.seq for e in runs.trace(run_id, after=2, limit=2)] == [3, 4]


def test_quick_runs_and_a_step_that_leaves_its_commands_to_settle(store: FileStore, tmp_path: Path) -> None:
    """`quick`: only local appends (the MCP server runs those on its event loop); commands wait for `settle`."""
    runs = Runs(store, cwd=tmp_path, allow_inline_commands=True)
    gated = dict(
        SPEC,
        workspace="none",
        policy={
            "verification_gates": [
                *SPEC["policy"]["verification_gates"],
                {"name": "marker", "command": f"{sys.executable} -c \"open('ran', 'w').write('yes')\""},
            ]
        },
    )
    gated["steps"] = [dict(SPEC["steps"][0], verification_gates=["ok", "marker"]), *SPEC["steps"][1:]]
    run_id = runs.start_run(spec=gated, inputs={"ticket": "t"}).run_id
    assert quick(runs, run_id)
    assert not quick(runs, "no-such-run")  # the regular path reports the error
    answer = runs.step(run_id, "plan#1", {"ok": True}, run_commands=False)
    assert answer.commands_pending
    assert not (tmp_path / "ran").exists()  # decided and durable, the command not yet run
    assert [t.task_id for t in answer.tasks] == []
    settled = runs.settle(run_id, "plan#1")
    assert (tmp_path / "ran").read_text() == "yes"
    assert not settled.commands_pending
    assert settled.accepted
    assert [g.name for g in settled.gate_results] == ["ok", "marker"]
    assert [t.task_id for t in settled.tasks] == ["execute#1"]
    assert runs.step(run_id, "plan#1", {"ok": True}).model_dump() == settled.model_dump()  # same answer again


def test_a_run_that_records_its_files_is_not_quick(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    runs = Runs(FileStore(tmp_path / "store"), cwd=repo)
    recorded = runs.start_run(spec=dict(SPEC, workspace="git"), inputs={"ticket": "t"}).run_id
    plain = runs.start_run(spec=dict(SPEC, workspace="none"), inputs={"ticket": "t"}).run_id
    assert not quick(runs, recorded)
    assert quick(runs, plain)


def test_a_step_that_must_not_wait_says_busy_and_does_nothing(store: FileStore, tmp_path: Path) -> None:
    from loopengt_core.store import LockBusy

    runs = Runs(store, cwd=tmp_path)
    run_id = runs.start_run(spec=SPEC, inputs={"ticket": "t"}).run_id
    n = count(store, run_id)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock(run_id):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(LockBusy):
            runs.step(run_id, "plan#1", {"ok": True}, wait=False)
        assert count(store, run_id) == n
    finally:
        release.set()
        holder.join()
    # another process's flock: the same
    child = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
         str(store.root / "runs" / run_id / "lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            runs.step(run_id, "plan#1", {"ok": True}, wait=False)
    finally:
        child.kill()
        child.wait()
    assert runs.step(run_id, "plan#1", {"ok": True}, wait=False).accepted
    assert count(store, run_id) > n
