"""A store written by loopengt 0.2.0 (before events were typed) loads, folds, continues and checks the same,
and the current code writes the same log for the same script.

tests/fixtures/store_v0_2_0 was written by `tests/golden_run.py` with 0.2.0's code (base commit 9c9e8cd),
with `expected.json` holding the state and view that code folded from each run. It has every event type.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import golden_run
import pytest
from clock import Clock

from loopengt_core.engine.view import run_view
from loopengt_core.model.events import (
    EVENT_TYPES,
    CommandFinished,
    OutputSubmitted,
    StepCompleted,
    TaskIssued,
    event_from_record,
    materialised,
    to_record,
)
from loopengt_core.model.state import project_run
from loopengt_core.service.check import check_store
from loopengt_core.service.portability import export_run, import_run, read_export
from loopengt_core.service.runs import Runs
from loopengt_core.store import Store
from loopengt_core.store.files import FileStore

FIXTURE = Path(__file__).parent / "fixtures" / "store_v0_2_0"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURE / "expected.json").read_text())
GOLDEN_BASE = "/tmp/golden-gen"  # where the fixture was driven: its workspace roots name it
RUN_IDS = sorted(EXPECTED)
# event types added since 0.2.0, which its logs cannot hold: a budget or stuck pause, usage read from a
# transcript (issue 16), a command whose runner died (issue 14), parallel branches in worktrees (issue 17)
ADDED_TYPES = {
    "run_paused",
    "task_held",
    "budget_reached",
    "usage_read",
    "command_abandoned",
    "worktree_added",
    "branches_merged",
    "join_deferred",
}
# RunView keys added since 0.2.0: what a run spent, why it paused itself (issue 16), the commands running (issue 14)
ADDED_VIEW_KEYS = ("spend", "paused_for", "budget_warning", "checking")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "golden"
    shutil.copytree(FIXTURE, copy, ignore=shutil.ignore_patterns("expected.json"))
    return copy


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_fixture_holds_every_event_type() -> None:
    seen = {r["type"] for run_id in RUN_IDS for r in _records(FIXTURE / "runs" / run_id / "events.jsonl")}
    assert seen == set(EVENT_TYPES) - ADDED_TYPES


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_each_record_reads_and_writes_back_unchanged(run_id: str) -> None:
    for record in _records(FIXTURE / "runs" / run_id / "events.jsonl"):
        record.pop("crc")
        record.pop("end", None)
        assert to_record(event_from_record(record)) == record
        assert json.dumps(to_record(event_from_record(record))) == json.dumps(record)  # key order too


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_a_0_2_0_run_folds_to_the_state_and_view_0_2_0_folded(store_dir: Path, run_id: str) -> None:
    store = FileStore(store_dir)
    whole = project_run(store.events(run_id))
    assert whole.model_dump(mode="json") == EXPECTED[run_id]["state"]
    view = run_view(whole).model_dump(mode="json")
    for key in ADDED_VIEW_KEYS:
        view.pop(key)
    for step in view["steps"]:
        step.pop("spend")
    assert view == EXPECTED[run_id]["view"]
    loaded = store.load(run_id)  # through the snapshot 0.2.0 wrote, where there is one
    from_snapshot = project_run(
        loaded.events, whole.model_validate(loaded.snapshot) if loaded.snapshot else None
    )
    assert from_snapshot.model_dump(mode="json") == EXPECTED[run_id]["state"]


def test_a_0_2_0_run_continues_to_completion_and_the_store_checks_clean(store_dir: Path) -> None:
    clock = Clock(datetime(2026, 1, 1, 12, 1, 50, tzinfo=UTC))  # before review#1 expires
    runs = Runs(FileStore(store_dir), cwd=store_dir, clock=clock, snapshot_every=5)
    assert [t.task_id for t in runs.get_run(golden_run.MAIN).tasks] == ["review#1"]
    answer = runs.step(golden_run.MAIN, "review#1", {"verdict": "good"})
    assert answer.status == "completed"
    assert answer.final_output == {"verdict": "good"}
    # the old log goes on in the new shape: the accepted output is referred to, not repeated
    events = list(FileStore(store_dir).events(golden_run.MAIN))
    completed = [e for e in events if isinstance(e, StepCompleted)]
    assert completed[-1].output_seq is not None
    assert "output" not in completed[-1].model_fields_set
    assert completed[0].output_seq is None  # 0.2.0's, read as it was written
    assert project_run(events) == runs.kernel.read(golden_run.MAIN).state
    assert all(not r.problems for r in check_store(FileStore(store_dir)))
    done = subprocess.run(
        [sys.executable, "-m", "loopengt_server", "check", "--store", str(store_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 with problems" in done.stdout


_UNFIXABLE = re.compile(r'"runner":"[^"]*"|"duration_seconds":[0-9.e-]+')
_CRC = re.compile(r',"crc":"[0-9a-f]{8}"')
_END = re.compile(r',"end":[0-9]+')
# keys written since 0.2.0, each at the end of its event's data: `via` of an approval's answer (issue 22),
# `compared` of a retry (stuck detection, on by default since issue 16)
# and `output_seq` of a step in a fork's state (which event of the log records the step's output)
_ADDED = re.compile(
    r',"via":"(?:cli|elicitation|web)"(?=\})|,"compared":\{[^{}]*\}(?=\})|,"output_seq":[0-9]+(?=,"last_failure")'
)


def _comparable(line: str, base: str) -> str:
    """The line with what no clock fixes made alike and without the keys added since 0.2.0; its checksum
    goes too, but only if that changed it."""
    alike = _UNFIXABLE.sub(lambda m: m.group(0).split(":")[0] + ":*", line.replace(base, "<BASE>"))
    alike = _END.sub("", _ADDED.sub("", alike))  # the appends' bounds are compared apart (`_appends`)
    return alike if alike == line else _CRC.sub("", alike)


def _appends(lines: list[str]) -> list[list[str]]:
    """The log's appends (one lock cycle's events each), as the event types of each."""
    groups: list[list[str]] = []
    end = 0
    for line in lines:
        record = json.loads(line)
        if record["seq"] > end:
            groups.append([])
            end = record.get("end", record["seq"])
        groups[-1].append(record["type"])
    return groups


def _merged_claims(groups: list[list[str]]) -> list[list[str]]:
    """0.2.0's appends with each lone claim (command_started) joined to the submission before it: a step
    that makes a command due now claims it in its decision's lock cycle, where 0.2.0 took one more."""
    merged: list[list[str]] = []
    for group in groups:
        if group[0] == "command_started" and merged and "output_submitted" in merged[-1]:
            merged[-1] = merged[-1] + group
        else:
            merged.append(group)
    return merged


def _inlined(lines: list[str]) -> list[str]:
    """The lines with each output where 0.2.0 repeated it (step_completed's output, a task's input) instead
    of referred to by seq; a line so rewritten has no checksum."""
    outputs: dict[int, Any] = {}
    out = []
    for line in lines:
        text, record = line, json.loads(line)
        event = event_from_record(record)
        match event:
            case OutputSubmitted():
                outputs[event.seq] = event.output
            case CommandFinished():
                outputs[event.seq] = event.result
            case StepCompleted() if event.output_seq is not None:
                event = StepCompleted(
                    seq=event.seq,
                    at=event.at,
                    step=event.step,
                    output=outputs[event.output_seq],
                    task_id=event.task_id,
                )
            case TaskIssued() if event.input_refs:
                fields = {name: getattr(event, name) for name in event.model_fields_set - {"input_refs"}}
                fields["input"] = materialised(event.input or {}, event.input_refs, outputs.__getitem__)
                event = TaskIssued(**fields)
        if event.type in ("step_completed", "task_issued") and to_record(event) != {
            k: v for k, v in record.items() if k not in ("crc", "end")
        }:
            text = json.dumps(
                to_record(event, end=record.get("end")), separators=(",", ":"), ensure_ascii=False
            )
        out.append(text)
    return out


def test_the_current_code_writes_each_output_once(tmp_path: Path) -> None:
    """step_completed and task_issued refer to the output_submitted that records an output: the log holds
    each output once, and the fold puts it back where 0.2.0 repeated it (checked line by line below)."""
    golden_run.drive(tmp_path / "gen")
    text = (tmp_path / "gen" / "store" / "runs" / golden_run.MAIN / "events.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    completed = [r["data"] for r in records if r["type"] == "step_completed"]
    assert completed
    assert all("output" not in d and isinstance(d["output_seq"], int) for d in completed)
    refs = [
        r["data"]["input_refs"] for r in records if r["type"] == "task_issued" and "input_refs" in r["data"]
    ]
    assert refs, "a later task's input refers to an earlier output"
    for data in completed:
        assert records[data["output_seq"] - 1]["type"] in ("output_submitted", "command_finished")


def test_the_current_code_writes_the_log_0_2_0_wrote(tmp_path: Path) -> None:
    ids = golden_run.drive(tmp_path / "gen")
    written = tmp_path / "gen" / "store" / "runs"
    assert sorted(ids.values()) == RUN_IDS
    for run_id in RUN_IDS:
        ours = _inlined((written / run_id / "events.jsonl").read_text().splitlines())
        theirs = (FIXTURE / "runs" / run_id / "events.jsonl").read_text().splitlines()
        assert len(ours) == len(theirs), run_id
        assert _appends(ours) == _merged_claims(_appends(theirs)), run_id
        for mine, golden in zip(ours, theirs, strict=True):  # a line nothing unfixable touched: byte for byte
            ours_alike, golden_alike = (
                _comparable(mine, str(tmp_path / "gen")),
                _comparable(golden, GOLDEN_BASE),
            )
            if ours_alike != golden_alike:  # one side had a key that changed its checksum: compare without
                assert _CRC.sub("", ours_alike) == _CRC.sub("", golden_alike)


def test_0_2_0_runs_exported_and_imported_into_each_store_read_back_record_for_record(
    store_dir: Path, store: Store
) -> None:
    """Export (file store) -> JSON -> import into either backend -> the same records and the same fold."""
    source = FileStore(store_dir)
    for run_id in RUN_IDS:
        document = read_export(export_run(source, run_id).to_json())
        import_run(store, document)
        golden = _records(FIXTURE / "runs" / run_id / "events.jsonl")
        for record in golden:
            record.pop("crc")
            record.pop("end", None)
        assert [to_record(e) for e in store.events(run_id)] == golden
        assert project_run(store.events(run_id)).model_dump(mode="json") == EXPECTED[run_id]["state"]
