"""Restart and replay checks shared by the budget and stuck-loop tests: a restart is a new FileStore and
Runs on the same folder, and a run's live view must equal the fold of its log in this and a new service."""

from __future__ import annotations

from loopengt_core.engine.view import run_view
from loopengt_core.model.state import project_run
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore


def fresh(runs: Runs, restart: bool) -> Runs:
    """`runs`, or with `restart` a new service on the same store (nothing cached)."""
    return Runs(FileStore(runs.store.root), cwd=runs.cwd) if restart else runs  # type: ignore[attr-defined]


def assert_fold_equals_log(runs: Runs, run_id: str) -> None:
    live = runs.get_run(run_id)
    assert run_view(project_run(runs.store.events(run_id))) == live
    assert Runs(FileStore(runs.store.root), cwd=runs.cwd).get_run(run_id) == live  # type: ignore[attr-defined]
