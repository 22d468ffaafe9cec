"""A damaged log: found anywhere (behind a snapshot too), named by file and line, never written after,
listed as `corrupt`, repaired only on request (with a backup); a symlinked run directory is refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import StepCompleted
from loopengt_core.service.runs import Runs
from loopengt_core.store import Checkpoint
from loopengt_core.store.files import FileStore
from loopengt_server.cli import app

SPEC_TEXT = "version: 1\n"
LOOP: dict[str, Any] = {
    "name": "long-loop",
    "goal": "many turns",
    "pattern": "evaluator_optimizer",
    "agents": [{"name": "critic"}, {"name": "coder"}],
    "steps": [{"name": "evaluate", "agent": "critic"}, {"name": "optimize", "agent": "coder"}],
    "policy": {"max_turns": 500},
    "workspace": "none",
}


def ev(seq: int) -> StepCompleted:
    return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output={"n": seq})


def log_of(root: Path, run_id: str = "r1") -> Path:
    return root / "runs" / run_id / "events.jsonl"


def flip(path: Path, line: int) -> None:
    """Change one byte of a line, keeping its length (so a snapshot's offset still fits)."""
    lines = path.read_bytes().splitlines(keepends=True)
    target = lines[line - 1]
    at = target.index(b'"n":') + 4
    lines[line - 1] = target[:at] + (b"7" if target[at : at + 1] != b"7" else b"8") + target[at + 1 :]
    path.write_bytes(b"".join(lines))


def drop(path: Path, line: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: line - 1] + lines[line:]))


def long_run(root: Path, events: int = 250, snapshot_at: int = 200) -> None:
    store = FileStore(root)
    store.create_run("r1", SPEC_TEXT, [ev(1)])
    for seq in range(2, events + 1):
        store.append("r1", [ev(seq)])
    store.save_snapshot("r1", snapshot_at, {"at": snapshot_at})
    store.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


# --- the store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "drop"])
def test_damage_behind_the_snapshot_is_found_and_named(root: Path, damage: str) -> None:
    long_run(root)
    (flip if damage == "flip" else drop)(log_of(root), 57)
    before = log_of(root).read_bytes()
    fresh = FileStore(root)
    with pytest.raises(StoreCorrupt) as info:
        fresh.load("r1")
    message = str(info.value)
    assert f"{log_of(root)} line 57 is damaged" in message
    assert "loopengt check --repair r1" in message
    assert fresh.lines_parsed <= 260  # found by the prefix CRC, then one scan names the line
    with pytest.raises(StoreCorrupt, match="line 57"):
        FileStore(root).append("r1", [ev(251 if damage == "flip" else 250)])
    assert log_of(root).read_bytes() == before  # nothing appended after the damaged line


def test_an_intact_log_with_a_snapshot_still_loads_by_seeking(root: Path) -> None:
    long_run(root, events=1_000, snapshot_at=990)
    fresh = FileStore(root)
    loaded = fresh.load("r1")
    assert loaded.snapshot == {"at": 990}
    assert [e.seq for e in loaded.events] == list(range(991, 1_001))
    assert fresh.lines_parsed <= 12
    fresh.append("r1", [ev(1_001)])  # checked already: the append reads only the end
    assert fresh.lines_parsed <= 14


def test_snapshots_carry_the_prefix_crc_forward_without_rereading_the_log(root: Path) -> None:
    long_run(root, events=1_000, snapshot_at=900)
    store = FileStore(root)
    store.load("r1")
    for seq in range(1_001, 1_101):
        store.append("r1", [ev(seq)])
    store.bytes_read = 0
    store.save_snapshot("r1", 1_100, {"at": 1_100})
    size_since = log_of(root).stat().st_size * 200 // 1_100
    # the bytes since the last snapshot, not the log: once for the prefix CRC, once for the task index
    # (tasks.idx is brought up to date with each snapshot)
    assert store.bytes_read < 2 * size_since + 16_000
    assert FileStore(root).load("r1").snapshot == {"at": 1_100}


# --- the service: read-only, listed as corrupt ----------------------------------------------------


def drive(runs: Runs, run_id: str, turns: int) -> None:
    for _ in range(turns):
        task = runs.get_run(run_id).tasks[0]
        runs.step(run_id, task.task_id, {"score": 0.1, "summary": "again"})


@pytest.mark.parametrize("damage", ["flip", "drop"])
def test_a_damaged_run_is_read_only_and_listed_as_corrupt(root: Path, tmp_path: Path, damage: str) -> None:
    runs = Runs(FileStore(root, snapshot_every=10), cwd=tmp_path)
    view = runs.start_run(spec=LOOP, run_id="r1")
    drive(runs, view.run_id, 15)
    runs.start_run(spec=LOOP, run_id="ok")
    assert (root / "runs" / "r1" / "snapshot.json").exists()
    log = log_of(root)
    if damage == "flip":
        lines = log.read_bytes().splitlines(keepends=True)
        lines[3] = lines[3].replace(b'"at":"2', b'"at":"3', 1)
        log.write_bytes(b"".join(lines))
    else:
        drop(log, 4)
    before = log.read_bytes()

    fresh = Runs(FileStore(root, snapshot_every=10), cwd=tmp_path)
    with pytest.raises(StoreCorrupt, match=r"events\.jsonl line 4 is damaged"):
        fresh.get_run("r1")
    with pytest.raises(StoreCorrupt, match="line 4"):
        fresh.step("r1", "evaluate#9", {"score": 0.1})
    with pytest.raises(StoreCorrupt, match="line 4"):
        fresh.checkpoint("r1")
    assert log.read_bytes() == before
    listed = {s.run_id: s for s in fresh.list_runs()}
    assert listed["ok"].status == "running"
    assert listed["r1"].status == "corrupt"
    assert listed["r1"].error is not None
    assert "line 4 is damaged" in listed["r1"].error
    assert [s.run_id for s in fresh.list_runs(status="corrupt")] == ["r1"]


# --- check and repair ----------------------------------------------------------------------------


def test_check_lists_and_repair_truncates_with_a_backup(root: Path) -> None:
    long_run(root)
    store = FileStore(root)
    store.save_checkpoint(Checkpoint("r1", "cp-1", 30, None, "2026-01-01T00:00:00Z", {"at": 30}))
    store.save_checkpoint(Checkpoint("r1", "cp-2", 120, None, "2026-01-01T00:00:00Z", {"at": 120}))
    flip(log_of(root), 57)
    original = log_of(root).read_bytes()
    cli = CliRunner()

    checked = cli.invoke(app, ["check", "--store", str(root)])
    assert checked.exit_code == 1
    assert "r1: " in checked.output
    assert "line 57 is damaged" in checked.output
    assert log_of(root).read_bytes() == original  # check alone changes nothing

    repaired = cli.invoke(app, ["check", "--store", str(root), "--repair", "r1"])
    assert repaired.exit_code == 0, repaired.output
    assert "kept events 1-56" in repaired.output
    assert "removed 194 lines" in repaired.output
    assert "cp-2" in repaired.output
    backups = list((root / "runs" / "r1").glob("events.jsonl.corrupt-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == original
    assert str(backups[0]) in repaired.output
    assert log_of(root).read_bytes() == b"".join(original.splitlines(keepends=True)[:56])
    assert not (root / "runs" / "r1" / "snapshot.json").exists()
    fresh = FileStore(root)
    assert len(fresh.load("r1").events) == 56
    assert [c.checkpoint_id for c in fresh.list_checkpoints("r1")] == ["cp-1"]
    fresh.append("r1", [ev(57)])
    assert "damaged" not in cli.invoke(app, ["check", "--store", str(root)]).output  # (these events fold to
    # no run, which check reports too: the log itself is sound again)
    again = cli.invoke(app, ["check", "--store", str(root), "--repair", "r1"])
    assert again.exit_code == 0
    assert "nothing to repair" in again.output


def test_doctor_lists_corrupt_runs(root: Path, tmp_path: Path) -> None:
    long_run(root)
    flip(log_of(root), 57)
    result = CliRunner().invoke(app, ["doctor", "--store", str(root)])
    assert "corrupt" in result.output
    assert "r1" in result.output
    assert "loopengt check --repair r1" in result.output


# --- symlinks -------------------------------------------------------------------------------------


def test_a_symlinked_run_directory_is_refused_as_foreign(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    FileStore(elsewhere).create_run("r1", SPEC_TEXT, [ev(1), ev(2)])
    (root / "runs").mkdir(parents=True)
    os.symlink(elsewhere / "runs" / "r1", root / "runs" / "r1")
    before = log_of(elsewhere).read_bytes()
    store = FileStore(root)
    for call in (
        lambda: store.load("r1"),
        lambda: store.events("r1"),
        lambda: store.append("r1", [ev(3)]),
        lambda: store.last_seq("r1"),
    ):
        with pytest.raises(StoreCorrupt, match="is a symbolic link"):
            call()
    assert log_of(elsewhere).read_bytes() == before
    listed = {s.run_id: s for s in Runs(store, cwd=tmp_path).list_runs()}
    assert listed["r1"].status == "corrupt"
    assert "symbolic link" in (listed["r1"].error or "")


def test_a_symlinked_log_is_refused_as_foreign(root: Path, tmp_path: Path) -> None:
    FileStore(root).create_run("r1", SPEC_TEXT, [ev(1)])
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(log_of(root).read_bytes())
    log_of(root).unlink()
    os.symlink(outside, log_of(root))
    with pytest.raises(StoreCorrupt, match="is a symbolic link"):
        FileStore(root).append("r1", [ev(2)])
    assert outside.read_bytes().count(b"\n") == 1


# --- where repair, symlink refusal and the task index meet ---------------------------------------------


def task_ev(seq: int, task: str) -> StepCompleted:
    return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output={"n": seq}, task_id=task)


def test_repair_leaves_no_stale_task_index(tmp_path: Path) -> None:
    """check --repair cuts the log; events written after the cut must be found by task id."""
    store = FileStore(tmp_path / "store")
    store.create_run("r", "name: x\n", [task_ev(i, f"a#{i:02d}") for i in range(1, 11)])
    store.save_snapshot("r", 10, {})  # brings tasks.idx up to seq 10
    log = store.runs_dir / "r" / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    at = lines[5].index(b'"n":') + 4
    lines[5] = lines[5][:at] + b"7" + lines[5][at + 1 :]  # line 6 damaged, same length
    log.write_bytes(b"".join(lines))
    fresh = FileStore(tmp_path / "store")
    assert fresh.repair("r") is not None  # cut after seq 5
    fresh.load("r")
    for i in range(6, 11):  # the run goes on, one step at a time, with new tasks
        fresh.append("r", [task_ev(i, f"b#{i:02d}")])
    assert [e.seq for e in fresh.task_events("r", "b#08")] == [8]


def test_a_symlinked_task_index_is_not_followed(tmp_path: Path) -> None:
    """The store refuses symlinked logs as foreign; tasks.idx beside the log must not be followed either."""
    store = FileStore(tmp_path / "store")
    store.create_run("r", "name: x\n", [task_ev(i, f"a#{i:02d}") for i in range(1, 11)])
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"not the store's\n")
    (store.runs_dir / "r" / "tasks.idx").symlink_to(outside)
    store.save_snapshot("r", 10, {})
    with pytest.raises(StoreCorrupt, match=r"symbolic link|foreign"):
        store.task_events("r", "a#03")
    assert outside.read_bytes() == b"not the store's\n"


def test_a_symlinked_checkpoints_dir_is_not_written_through(tmp_path: Path) -> None:
    from loopengt_core.store import Checkpoint

    store = FileStore(tmp_path / "store")
    store.create_run("r", "name: x\n", [task_ev(i, f"a#{i:02d}") for i in range(1, 3)])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cps = store.runs_dir / "r" / "checkpoints"
    cps.rmdir()
    cps.symlink_to(outside)
    with pytest.raises(StoreCorrupt, match=r"symbolic link|foreign"):
        store.save_checkpoint(Checkpoint("r", "cp-1", 2, None, "2026-01-01T00:00:00.000Z", {}))
    assert list(outside.iterdir()) == []
