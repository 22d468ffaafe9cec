"""One copy of each output (issue 19): the log records an output once, in output_submitted; step_completed
and the next task's input refer to it by seq, and every answer gives the full input as before."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.errors import InvalidArgument, StoreCorrupt, TooLarge
from loopengt_core.model.events import TaskIssued, by_reference, event_from_record, materialised, to_record
from loopengt_core.model.limits import MAX_OUTPUT_BYTES, checked_canonical
from loopengt_core.model.state import project_run
from loopengt_core.service.inputs import digest
from loopengt_core.service.portability import export_run, import_run, read_export
from loopengt_core.service.runs import Runs
from loopengt_core.store import Store
from loopengt_core.store.files import FileStore
from loopengt_server.ui.fold import TaskFold

LOOP: dict[str, Any] = {
    "name": "refs",
    "pattern": "custom",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "work", "agent": "a", "routes": {"field": "next", "map": {"again": "work", "stop": "join"}}},
        {"name": "side", "agent": "a", "next": ["join"]},
        {"name": "join", "agent": "a", "dependencies": [{"step_name": "work"}, {"step_name": "side"}]},
    ],
    "policy": {"max_turns": 50},
}


def _output(i: int) -> dict[str, Any]:
    return {"next": "again", "text": f"marker-{i:04d}-" + "x" * 2000}


def _drive(runs: Runs, steps: int) -> str:
    view = runs.start_run(spec=LOOP)
    run_id, task = view.run_id, view.tasks[0].task_id
    for i in range(steps):
        answer = runs.step(run_id, task, _output(i))
        assert answer.tasks[0].input["previous"] == {"step": "work", "output": _output(i)}  # in full
        task = answer.tasks[0].task_id
    return run_id


def test_each_output_is_in_the_log_once_and_in_full_in_every_answer(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    runs = Runs(store, snapshot_every=3)
    run_id = _drive(runs, 8)
    log = (tmp_path / "store" / "runs" / run_id / "events.jsonl").read_text()
    for i in range(8):
        assert log.count(f"marker-{i:04d}-") == 1, i
    records = [json.loads(line) for line in log.splitlines()]
    issued = [r for r in records if r["type"] == "task_issued"][1:]
    assert all(r["data"]["input"]["previous"] == {"step": "work", "output": None} for r in issued)
    assert all(r["data"]["input_refs"] == {"/previous/output": r["seq"] - 2} for r in issued)
    # a new service (the snapshot, then the tail of the log) answers with the same full inputs
    again = Runs(FileStore(tmp_path / "store"), snapshot_every=3)
    assert again.get_run(run_id).tasks == runs.get_run(run_id).tasks
    assert project_run(store.events(run_id)) == runs.kernel.read(run_id).state
    # the web view's fold of the log shows each task's full input too
    fold = TaskFold()
    fold.add(store.events(run_id))
    assert fold.tasks["work#5"].input == {
        "goal": "",
        "context": {},
        "previous": {"step": "work", "output": _output(3)},
    }


FAN: dict[str, Any] = {
    "name": "fan",
    "pattern": "parallel_fan_out",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "work", "agent": "a"},
        {"name": "side", "agent": "a"},
        {"name": "join", "agent": "a", "dependencies": [{"step_name": "work"}, {"step_name": "side"}]},
    ],
}


def test_a_join_refers_to_each_dependency_and_the_fold_puts_them_back(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"))
    run_id = runs.start_run(spec=FAN).run_id
    runs.step(run_id, "side#1", {"side": "s" * 500})
    answer = runs.step(run_id, "work#1", {"w": "w" * 500})
    (task,) = answer.tasks
    assert task.input["dependencies"] == {"work": {"w": "w" * 500}, "side": {"side": "s" * 500}}
    issued = [e for e in runs.store.events(run_id) if isinstance(e, TaskIssued)][-1]
    assert issued.input is not None
    assert issued.input["dependencies"] == {"work": None, "side": None}
    assert set(issued.input_refs or {}) == {"/dependencies/work", "/dependencies/side"}
    assert Runs(FileStore(tmp_path / "store")).get_run(run_id).tasks == [task]


def test_a_new_shape_run_exports_and_imports_record_for_record(
    tmp_path: Path, store_factory: Callable[[], Store]
) -> None:
    source = FileStore(tmp_path / "source")
    runs = Runs(source)
    run_id = _drive(runs, 4)
    document = read_export(export_run(source, run_id).to_json())
    target = store_factory()
    import_run(target, document)
    assert [to_record(e) for e in target.events(run_id)] == [to_record(e) for e in source.events(run_id)]
    assert Runs(target).get_run(run_id).tasks == runs.get_run(run_id).tasks


def test_a_reference_to_an_output_no_step_holds_is_store_corruption(tmp_path: Path) -> None:
    runs = Runs(FileStore(tmp_path / "store"))
    run_id = _drive(runs, 2)
    events = list(runs.store.events(run_id))
    last = events[-1]
    assert isinstance(last, TaskIssued)
    record = to_record(last)
    record["data"]["input_refs"] = {"/previous/output": 1}
    with pytest.raises(StoreCorrupt, match="refers to output 1"):
        project_run([*events[:-1], event_from_record(record)])
    record["data"]["input_refs"] = {"/nowhere/output": last.seq - 2}
    with pytest.raises(StoreCorrupt, match="does not lead to a key"):
        project_run([*events[:-1], event_from_record(record)])


def test_by_reference_and_materialised_are_inverse_and_copy_only_what_changes() -> None:
    out_a, out_b = {"a": 1}, ["b"]
    task_input = {"goal": "g", "context": {"k": 1}, "x/y": {"~z": out_a}, "b": out_b, "same": {"a": 1}}
    logged, refs = by_reference(task_input, {id(out_a): 7, id(out_b): 9})
    assert refs == {"/x~1y/~0z": 7, "/b": 9}
    assert logged == {"goal": "g", "context": {"k": 1}, "x/y": {"~z": None}, "b": None, "same": {"a": 1}}
    assert logged["context"] is task_input["context"]  # untouched branches are shared, not copied
    assert task_input["x/y"] == {"~z": out_a}  # the input given is not changed
    assert materialised(logged, refs, {7: out_a, 9: out_b}.__getitem__) == task_input
    assert logged["x/y"] == {"~z": None}
    assert by_reference(task_input, {}) == (task_input, {})


def _digest_0_2(output: Any, outcome: str, error: str | None) -> str:
    blob = json.dumps([output, outcome, error], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1, 2.5, None, True, {"z": "y", "c": []}]},
        {"text": "ünïcode ✓", "n": -3},
        ("tuple", 1),
        {1: "a key that is not text"},
        "just text",
        [[[]]],
    ],
)
def test_an_output_is_encoded_once_to_check_it_and_identify_it_as_0_2_did(value: Any) -> None:
    got, canonical = checked_canonical(value, "output", MAX_OUTPUT_BYTES)
    assert got == json.loads(json.dumps(value))  # as the log holds it
    if isinstance(got, dict):
        assert list(got) == list(json.loads(json.dumps(value)))  # key order kept
    assert digest(got, "success", None, canonical=canonical) == _digest_0_2(value, "success", None)
    assert digest(got, "failure", "why ✓") == _digest_0_2(value, "failure", "why ✓")
    if isinstance(value, dict):  # the caller's object is not the one the run keeps
        value["added later"] = True
        assert "added later" not in got


def test_an_output_that_is_not_plain_json_or_too_large_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="output must be plain JSON"):
        checked_canonical({"k": "\ud800"}, "output", MAX_OUTPUT_BYTES)
    with pytest.raises(InvalidArgument, match="output must be plain JSON"):
        checked_canonical({"k": float("nan")}, "output", MAX_OUTPUT_BYTES)
    with pytest.raises(TooLarge, match="output is 21 bytes; the limit is 20 bytes"):
        checked_canonical({"k": "x" * 13}, "output", MAX_OUTPUT_BYTES, maximum=20)
