"""A checkpoint that cannot be written leaves no `checkpoint_taken` event behind, on either store; one
whose event cannot be appended is removed again; a checkpoint left without its event is replaced."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.service.runs import Runs
from loopengt_core.store import Checkpoint
from loopengt_core.store.files import FAULT_ENV, FileStore, StoreIOError

LOOP: dict[str, Any] = {
    "name": "two-steps",
    "goal": "checkpoint me",
    "pattern": "sequential",
    "agents": [{"name": "a"}],
    "steps": [{"name": "one", "agent": "a"}, {"name": "two", "agent": "a"}],
    "workspace": "none",
}


def types_of(runs: Runs, run_id: str) -> list[str]:
    return [e.type for e in runs.trace(run_id)]


def started(root: Path, tmp_path: Path, fault: str | None, monkeypatch: pytest.MonkeyPatch) -> Runs:
    if fault is not None:
        monkeypatch.setenv(FAULT_ENV, fault)
    runs = Runs(FileStore(root), cwd=tmp_path)
    monkeypatch.delenv(FAULT_ENV, raising=False)
    runs.start_run(spec=LOOP, run_id="r1")
    return runs


@pytest.mark.parametrize("fault", ["checkpoint.enospc", "append.enospc"])
def test_a_checkpoint_that_fails_to_save_leaves_no_event_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Disk full while writing the checkpoint, or while appending its event after it was written."""
    root = tmp_path / "store"
    runs = started(root, tmp_path, fault, monkeypatch)
    before = types_of(runs, "r1")
    with pytest.raises(StoreIOError, match="No space left on device"):
        runs.checkpoint("r1", "before the risky part")
    assert types_of(runs, "r1") == before
    assert runs.list_checkpoints("r1") == []
    assert list((root / "runs" / "r1" / "checkpoints").iterdir()) == []
    # Space is back: the same server takes the checkpoint, under the same id.
    info = runs.checkpoint("r1", "again")
    assert (info.checkpoint_id, info.seq) == ("cp-1", len(before) + 1)
    assert types_of(runs, "r1") == [*before, "checkpoint_taken"]
    assert [c.checkpoint_id for c in Runs(FileStore(root), cwd=tmp_path).list_checkpoints("r1")] == ["cp-1"]


def test_a_checkpoint_left_without_its_event_is_replaced(tmp_path: Path) -> None:
    """A crash between writing a checkpoint and appending its event leaves the file only: the next
    checkpoint of that id replaces it instead of failing on it forever."""
    root = tmp_path / "store"
    runs = Runs(FileStore(root), cwd=tmp_path)
    view = runs.start_run(spec=LOOP, run_id="r1")
    FileStore(root).save_checkpoint(Checkpoint("r1", "cp-1", 99, "stray", "2026-01-01T00:00:00Z", {"x": 1}))
    runs.step(view.run_id, "one#1", {"done": True})
    info = runs.checkpoint("r1", "real")
    assert info.checkpoint_id == "cp-1"
    point = FileStore(root).get_checkpoint("r1", "cp-1")
    assert (point.label, point.seq) == ("real", info.seq)


def test_postgres_refuses_a_nul_label_before_any_event(postgres_dsn: str, tmp_path: Path) -> None:
    from loopengt_core.store.postgres import PostgresStore

    store = PostgresStore(postgres_dsn)
    runs = Runs(store, cwd=tmp_path)
    run_id = f"nul-{uuid.uuid4().hex[:12]}"
    try:
        runs.start_run(spec=LOOP, run_id=run_id)
        before = types_of(runs, run_id)
        with pytest.raises(InvalidArgument, match="NUL"):
            runs.checkpoint(run_id, "a\x00b")
        assert types_of(runs, run_id) == before
        assert runs.list_checkpoints(run_id) == []
        assert runs.checkpoint(run_id, "fine").checkpoint_id == "cp-1"
        assert types_of(Runs(store, cwd=tmp_path), run_id) == [*before, "checkpoint_taken"]
    finally:
        store.delete_run(run_id)
        store.close()
