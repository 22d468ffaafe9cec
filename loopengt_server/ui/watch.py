"""What one open run page is sent: a snapshot when it connects, then only what changed.

A `RunWatch` keeps the page's position in the run's log; each update reads the events after it (never
the whole run again), folds them into the tasks, and sends the new timeline lines, the tasks they
touched, and the run's view and marked graph.
"""

from __future__ import annotations

import typing
from typing import Any

from loopengt_core.engine.view import RunView
from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.model.state import RunStatus
from loopengt_core.service.runs import Runs
from loopengt_server.ui.fold import TaskFold
from loopengt_server.ui.graph import mermaid, node_ids

RUN_STATUSES = (*typing.get_args(RunStatus), "corrupt", "unreadable")


def runs_list(runs: Runs, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The runs page: each run's summary, with its spend when it can be read."""
    if status is not None and status not in RUN_STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(RUN_STATUSES)} (got {status!r})")
    out = []
    for summary in runs.list_runs(status=status, limit=limit):
        row = summary.model_dump(mode="json")
        if summary.status not in ("corrupt", "unreadable"):
            try:
                row["spend"] = runs.get_run(summary.run_id).spend.model_dump(mode="json")
            except LoopengtError:
                row["spend"] = None  # deleted or damaged since listed: the summary says what it can
        out.append(row)
    return out


def marked_graph(runs: Runs, view: RunView) -> str:
    """The run's spec as Mermaid, each step styled by its status and the steps with open tasks marked."""
    spec = runs.spec_of(view.run_id)
    statuses = {s.name: s.status for s in view.steps}
    return mermaid(spec, statuses, frozenset(t.step for t in view.tasks))


class RunWatch:
    """One open run page's position in the run's log (see the module docstring)."""

    def __init__(self, runs: Runs, run_id: str) -> None:
        self.runs = runs
        self.run_id = run_id
        self.fold = TaskFold()

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, read once when it connects."""
        runs, run_id = self.runs, self.run_id
        view = runs.get_run(run_id)
        spec = runs.spec_of(run_id)
        lines = self.fold.add(runs.trace(run_id))
        self.fold.take_touched()
        children = [
            s.model_dump(mode="json") for s in runs.list_runs(limit=10_000) if s.parent_run_id == run_id
        ]
        return {
            **self._state(view),
            "spec": {"name": spec.name, "pattern": spec.pattern, "goal": spec.goal, "nodes": node_ids(spec)},
            "events": [e.model_dump(mode="json") for e in lines],
            "tasks": [t.model_dump(mode="json") for t in self.fold.tasks.values()],
            "children": children,
        }

    def update(self) -> dict[str, Any] | None:
        """What changed since the last snapshot or update; None when the log has nothing new."""
        new = self.runs.trace(self.run_id, after=self.fold.seq)
        if not new:
            return None
        lines = self.fold.add(new)
        view = self.runs.get_run(self.run_id)
        return {
            **self._state(view),
            "events": [e.model_dump(mode="json") for e in lines],
            "tasks": [t.model_dump(mode="json") for t in self.fold.take_touched()],
        }

    def _state(self, view: RunView) -> dict[str, Any]:
        return {
            "run": view.model_dump(mode="json"),
            "graph": marked_graph(self.runs, view),
            "checkpoints": [c.model_dump(mode="json") for c in self.runs.list_checkpoints(self.run_id)],
            "approval": self.runs.approval_request(self.run_id),
        }
