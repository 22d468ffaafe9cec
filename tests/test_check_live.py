"""`loopengt check` beside a live server: appends made while it reads are not problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopengt_core.model.events import AnyEvent
from loopengt_core.service.check import check_run
from loopengt_core.service.runs import Runs
from loopengt_core.store import LoadedRun
from loopengt_core.store.files import FileStore

SPEC: dict[str, Any] = {
    "name": "live",
    "goal": "step while checked",
    "pattern": "sequential",
    "agents": [{"name": "a"}],
    "steps": [{"name": f"s{i}", "agent": "a"} for i in range(9)],
}


class AppendsBetweenReads(FileStore):
    """A file store on which another writer (a server starting up) appends a step after each read of a
    run: whichever of the log and the load check reads first, the other sees more."""

    runs: Runs | None = None

    def _step(self, run_id: str) -> None:
        if self.runs is not None:
            [task] = self.runs.get_run(run_id).tasks
            self.runs.step(run_id, task.task_id, {"done": task.step})

    def load(self, run_id: str) -> LoadedRun:
        loaded = super().load(run_id)
        self._step(run_id)
        return loaded

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[AnyEvent]:
        found = super().events(run_id, after=after, limit=limit)
        self._step(run_id)
        return found


def test_a_run_stepped_while_check_reads_it_has_no_problems(tmp_path: Path) -> None:
    store = AppendsBetweenReads(tmp_path / "store", snapshot_every=3)
    runs = Runs(FileStore(tmp_path / "store", snapshot_every=3), cwd=tmp_path)
    run_id = runs.start_run(spec=SPEC).run_id
    for _ in range(3):  # past a snapshot, so the load goes through it
        [task] = runs.get_run(run_id).tasks
        runs.step(run_id, task.task_id, {"done": task.step})
    runs.checkpoint(run_id, label="before")
    before = len(store.events(run_id))
    store.runs = runs
    result = check_run(store, run_id)
    store.runs = None
    assert len(store.events(run_id)) > before + 1  # the other writer did append meanwhile
    assert result.problems == []
