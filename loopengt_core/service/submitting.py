"""Submitting a task's output: checked, decided under the run's lock once, answered (again, the same).

`Runs.step` delegates here. The output, error and usage are checked and digested outside the lock (the
run's files too: git takes time); the decision takes one lock cycle; the same submission twice gets the
same answer (from the state, else from the task's own events in the log) and appends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopengt_core.engine import Engine, open_tasks_text
from loopengt_core.engine.view import StepAnswer, step_answer
from loopengt_core.model.budget import parse_usage
from loopengt_core.model.errors import Conflict, InvalidArgument
from loopengt_core.model.events import AnyEvent
from loopengt_core.model.limits import (
    MAX_OUTPUT_BYTES,
    MAX_USAGE_BYTES,
    checked,
    checked_canonical,
    checked_text,
)
from loopengt_core.model.state import Answer, RunState, answer_in_log
from loopengt_core.service.binding import unrecorded
from loopengt_core.service.inputs import MAX_TASK_ID_CHARS, digest
from loopengt_core.service.loaded import LoadedRun
from loopengt_core.service.workspace import WorkspaceError
from loopengt_core.store import Store

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs


def submit_output(
    runs: Runs,
    run_id: str,
    task_id: str,
    output: Any = None,
    *,
    outcome: str = "success",
    error: str | None = None,
    run_commands: bool = True,
    wait: bool = True,
    usage: Any = None,
    submitted_by: str | None = None,
    settle_next: bool = False,
) -> StepAnswer:
    """Submit a task's output. The same submission twice gets the same answer and appends nothing.

    `submitted_by`: who submits, as the caller is known (an MCP session, a bearer principal, a headless
    agent command); recorded with the output. A judge task from whoever submitted the output it
    judges is refused.

    Commands it makes due (command gates, command steps) start on the command runner; the answer comes
    when they are done or after the call's bound (`wait_bound`), then with them under `checking`.
    `run_commands=False`: return as soon as the decision is durable, with `commands_pending` set
    when commands are due; `settle` starts them and answers then. `settle_next`: the caller calls `settle`
    next. When this process runs the commands (`run_commands`, `settle_next`), the decision's lock cycle
    also claims the first one (`CommandRunner.claim`): the worker starts it without a cycle of its own.
    `wait=False`: raise LockBusy, having done nothing, when the run's lock is held elsewhere.
    """
    runs.kernel.known(run_id)
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID_CHARS:
        raise InvalidArgument("task_id must be a task id such as 'plan#1' (see the run's open tasks)")
    error = checked_text(error, "error")
    output, canonical = checked_canonical(
        output,
        "output",
        MAX_OUTPUT_BYTES,
        maximum=runs.max_output_bytes,
        hint="Put large artefacts in files and submit their paths",
    )
    reported = parse_usage(checked(usage, "usage", MAX_USAGE_BYTES)[0] if usage is not None else None)
    mark = digest(output, outcome, error, canonical=canonical)
    root = runs.kernel.live_root(run_id)
    try:  # outside the lock: git takes time
        current = runs.binding.snapshot(root) if root is not None else None
    except WorkspaceError as exc:
        raise unrecorded(
            exc,
            run_id,
            f"The output for {task_id} was not taken: once that is fixed, submit it again "
            f"(headless: `loopengt run --resume {run_id} --agent CMD`)",
        ) from None
    recorded = current.record() if current is not None else None

    old: dict[str, Answer] = {}  # an answer read from the log, kept for the reply (read once)

    def decide(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
        old.clear()  # rerunnable: the kernel may decide again on a newer state
        if task_id not in state.tasks:
            answer = state.answers.get(task_id) or old_answer(runs.store, run_id, task_id)
            if answer is not None:
                old[task_id] = answer
                same_submission(state, task_id, answer, mark)
                return []
        return engine.submit(
            state,
            task_id,
            output,
            outcome=outcome,
            error=error,
            digest=mark,
            now=now,
            workspace=recorded,
            usage=reported,
            submitted_by=submitted_by,
        )

    claim = runs.commands.claim(run_id) if run_commands or settle_next else None
    answer = answer_for(runs, run_id, task_id, old)
    result = runs.kernel.locked(run_id, decide, answer, wait=wait, rerunnable=True, claim=claim)
    if result.commands_pending and run_commands:
        return runs.settle(run_id, task_id, current)
    return runs.shown(result, current)


def answer_for(
    runs: Runs, run_id: str, task_id: str, known: dict[str, Answer] | None = None
) -> Callable[[LoadedRun], StepAnswer]:
    """What reads the answer for `task_id` from the run (`known`: answers read from the log already)."""

    def answer(run: LoadedRun) -> StepAnswer:
        found = (
            run.state.answers.get(task_id)
            or (known or {}).get(task_id)
            or old_answer(runs.store, run_id, task_id)
            or Answer()
        )
        return step_answer(run.state, found.gate_results)

    return answer


def old_answer(store: Store, run_id: str, task_id: str) -> Answer | None:
    """A submission older than the recent answers kept in the state: read from the task's own events,
    which the store finds by task id (never the whole log: a 100,000-step run stays cheap)."""
    return answer_in_log(store.task_events(run_id, task_id), task_id)


def same_submission(state: RunState, task_id: str, answer: Answer, mark: str) -> None:
    """Conflict unless `answer` is this submission again (`mark`: its digest) and the task takes one."""
    if answer.digest is None and answer.expired_after_seconds is not None:
        raise Conflict(
            f"task '{task_id}' expired after {answer.expired_after_seconds:g} s and takes no submission; "
            f"{open_tasks_text(state)}",
            run_id=state.run_id,
        )
    if answer.digest != mark:
        raise Conflict(
            f"task '{task_id}' was already submitted with a different output; {open_tasks_text(state)}",
            run_id=state.run_id,
        )
