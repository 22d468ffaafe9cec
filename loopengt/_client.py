"""`loopengt.open` and `loopengt.validate`: the public API over `Runs`, `open_store` and validation."""

from __future__ import annotations

import builtins
from pathlib import Path
from types import TracebackType
from typing import Any

from loopengt_core.engine.validation import SpecError, Validation, validation_of
from loopengt_core.engine.view import RunSummary, RunView, StepAnswer
from loopengt_core.service import logs
from loopengt_core.service.forks import CheckpointInfo
from loopengt_core.service.runs import Runs
from loopengt_core.service.specfiles import read_spec_file
from loopengt_core.store import Store, open_store


class Client:
    """Runs of one store. Thread-safe; several processes (and `loopengt serve`) may share the store.

    Every method raises `loopengt.LoopengtError` (with `.message` saying what to do, and `.code`) for a
    bad argument, an unknown run or task, or a conflict; never a store's own exception.
    """

    def __init__(
        self, store: Store, *, cwd: str | Path | None = None, allow_inline_commands: bool = False
    ) -> None:
        self.store = store
        self.runs = Runs(store, cwd=cwd, allow_inline_commands=allow_inline_commands)

    def start(
        self,
        spec_path: str | Path | None = None,
        *,
        template: str | None = None,
        spec: str | dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        run_id: str | None = None,
        context_from: list[str] | None = None,
    ) -> RunView:
        """Start a run of exactly one of: a spec file, a built-in template, a spec (YAML text or a dict).

        `inputs` are merged into the run's context. Starting an existing `run_id` with the same spec
        returns that run, so a retried start never makes two. `context_from`: earlier runs whose final
        outputs and step outputs every task gets in `input.memory`.
        """
        return self.runs.start_run(
            spec_path=str(spec_path) if spec_path is not None else None,
            template=template,
            spec=spec,
            inputs=inputs,
            run_id=run_id,
            context_from=context_from,
        )

    def step(
        self,
        run_id: str,
        task_id: str,
        output: Any = None,
        *,
        outcome: str = "success",
        error: str | None = None,
        usage: dict[str, Any] | None = None,
        submitted_by: str | None = None,
    ) -> StepAnswer:
        """Submit a task's output; gates run, and the answer says what follows (`gate_results`, `tasks`).

        `outcome="failure"` with `error` reports a failed attempt. The same submission twice returns the
        same answer and records nothing more. Command gates and command steps run before it returns.
        `submitted_by`: who submits (recorded with the output); a judge gate's task is refused from whoever
        submitted the output it judges (None: unknown, never refused).
        """
        return self.runs.step(
            run_id, task_id, output, outcome=outcome, error=error, usage=usage, submitted_by=submitted_by
        )

    def get(self, run_id: str) -> RunView:
        """The run as it stands: status, open tasks, steps, final output, the next action."""
        return self.runs.get_run(run_id)

    def list(self, *, status: str | None = None, limit: int = 50) -> builtins.list[RunSummary]:
        """Runs of the store, newest first; `status` keeps only those (running, completed, ...)."""
        return self.runs.list_runs(status=status, limit=limit)

    def checkpoint(self, run_id: str, label: str | None = None) -> CheckpointInfo:
        """A named point of the run to fork from later with `resume(run_id, checkpoint_id)`."""
        return self.runs.checkpoint(run_id, label)

    def resume(self, run_id: str, checkpoint_id: str | None = None, *, hint: str | None = None) -> RunView:
        """Continue a paused or interrupted run; with `checkpoint_id`, fork a new run from that point.

        `hint` (not with a checkpoint) becomes feedback to the next attempt.
        """
        return self.runs.resume(run_id, checkpoint_id, hint=hint)

    def cancel(self, run_id: str, reason: str | None = None) -> RunView:
        """End the run `cancelled`; open tasks close and nothing more can change it."""
        return self.runs.cancel_run(run_id, reason)

    def close(self) -> None:
        """Release the store (PostgreSQL: its connection pool)."""
        self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# `loopengt.open(store)` reads as the verb it is, like `shelve.open`; this module never calls the builtin.
def open(
    store: str | Path = ".loopengt", *, cwd: str | Path | None = None, allow_inline_commands: bool = False
) -> Client:
    """Open a store: a directory (created when missing) or a `postgresql://` URL.

    `cwd`: the project folder (spec paths are relative to it, commands run in it; default the current
    folder). `allow_inline_commands`: let `start(spec=...)` run command steps and gates, which a spec
    from a file or a template may always do.
    """
    logs.quiet_by_default()
    return Client(open_store(str(store)), cwd=cwd, allow_inline_commands=allow_inline_commands)


def validate(spec: str | Path | dict[str, Any]) -> Validation:
    """Check a loop spec without starting it: a file path (a `Path`, or one line of text ending in
    .yaml, .yml or .json), YAML text, or a dict. Never raises for a bad spec: the problems are the answer
    (a missing file too)."""
    if isinstance(spec, Path) or (
        isinstance(spec, str) and "\n" not in spec and spec.strip().endswith((".yaml", ".yml", ".json"))
    ):
        try:
            spec = read_spec_file(spec)
        except SpecError as exc:
            return Validation(valid=False, problems=exc.problems, parsed=False)
    return validation_of(spec)
