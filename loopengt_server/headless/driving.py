"""The loop that drives a run to its end: each open task to its agent command (in parallel with --jobs),
the output submitted, and the end shown."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from loopengt_core.engine.view import RunView
from loopengt_core.model.budget import Usage
from loopengt_core.model.state import TaskView
from loopengt_core.service.metrics import MetricsFold
from loopengt_core.service.runs import Runs
from loopengt_server.headless.agents import Agents
from loopengt_server.headless.calling import Called, call_agent, read_usage
from loopengt_server.headless.progress import Progress, last_lines, short
from loopengt_server.headless.watcher import Watcher
from loopengt_server.present.wording import for_person, plural

ACTIVE = ("running", "waiting_approval", "paused")


def _plain(usage: Usage | None) -> dict[str, Any] | None:
    return usage.model_dump(exclude_none=True) if usage is not None else None


def _show_task(progress: Progress, task: TaskView) -> None:
    progress.say(
        Text.assemble(
            ("task ", "bold cyan"),
            f"{task.task_id}: step ",
            (task.step, "bold"),
            f", attempt {task.attempt}, agent {task.agent}",
        )
    )
    if task.feedback:
        lines = last_lines(task.feedback, 1)
        if lines:
            progress.say(Text(f"  feedback: {lines[0]}", style="dim"))
    progress.now_doing(f"agent {task.agent}", step=task.step, attempt=task.attempt)


def _where(runs: Runs, view: RunView, task: TaskView) -> str:
    """Where an agent works: its task's own worktree (isolation: worktree, a join's merge), else the
    run's work tree (a fork bound to a git worktree works there), else the current directory."""
    if task.workdir is not None:
        return task.workdir
    return view.workspace.root if view.workspace is not None else str(runs.cwd)


def _call(argv: list[str], payload: dict[str, Any], where: str, on_stderr: Callable[[str], None]) -> Called:
    """One agent call: (output, error, usage, why usage is unknown, seconds)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="loopengt-usage-") as scratch:
        usage_file = Path(scratch) / "usage.json"
        output, error = call_agent(argv, payload, where, on_stderr=on_stderr, usage_file=usage_file)
        usage, unreadable = read_usage(usage_file)
    return output, error, usage, unreadable, time.monotonic() - started


def _report(progress: Progress, task: TaskView, done: Called, *, tail: list[str]) -> None:
    """Say how one agent call ended (with --jobs above 1, naming its branch)."""
    _, error, _, unreadable, took = done
    label = f"  agent ({task.step})" if progress.parallel else "  agent"
    if unreadable is not None:
        progress.say(Text(f"{label}: usage unknown: {unreadable}", style="yellow"))
    if error is not None:
        progress.say(Text.assemble(f"{label}: ", ("failed", "red"), f" ({took:.1f} s)"))
        for line in last_lines(error):
            progress.say(Text(f"    | {line}", style="dim"))
        return
    progress.say(f"{label}: done ({took:.1f} s)")
    for line in tail:
        progress.say(Text(f"    | {line}", style="dim"))


def _submit(runs: Runs, run_id: str, task: TaskView, done: Called, *, by: str) -> RunView:
    """Submit one agent call's result (a failure with the agent's error) as caller `by`; the answer."""
    output, error, usage, _, _ = done
    if error is not None:
        return runs.step(
            run_id, task.task_id, None, outcome="failure", error=error, usage=_plain(usage), submitted_by=by
        )
    return runs.step(run_id, task.task_id, output, usage=_plain(usage), submitted_by=by)


def _fan_out(
    runs: Runs, view: RunView, agents: Agents, progress: Progress, *, goal: str, tasks: list[TaskView]
) -> RunView:
    """Up to --jobs agents at once, each in its own workdir; results submitted in task order once all
    have returned (the service's lock keeps the submissions apart)."""
    from concurrent.futures import ThreadPoolExecutor

    for task in tasks:
        progress.branch_started(task, _where(runs, view, task))
        _show_task(progress, task)
    progress.now_doing(f"{plural(len(tasks), 'branch', 'branches')} at once", step="", attempt=0)

    def one(task: TaskView) -> Called:
        payload = {**task.model_dump(), "run_id": view.run_id, "goal": goal}
        done = _call(
            agents.for_role(task.agent).argv,
            payload,
            _where(runs, view, task),
            lambda line: progress.output_line(f"[{task.step}] {line}"),
        )
        _report(progress, task, done, tail=[])  # as each branch's agent returns
        progress.now_doing("waiting for the other branches", step=task.step)
        return done

    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="loopengt-agent") as pool:
        results = list(pool.map(one, tasks))
    answer = view
    try:
        for task, done in zip(tasks, results, strict=True):
            progress.now_doing("checking the output", step=task.step)
            answer = _submit(runs, view.run_id, task, done, by=agents.for_role(task.agent).identity)
            progress.branch_ended(task.step)
    finally:
        for task in tasks:
            progress.branch_ended(task.step)
    return answer


def drive(
    runs: Runs,
    view: RunView,
    agents: Agents,
    progress: Progress,
    watcher: Watcher | None = None,
    *,
    poll_seconds: float = 1.0,
    jobs: int = 1,
) -> RunView:
    """Work through the run until it ends (or Ctrl-C, which leaves it resumable). `jobs`: agents run at
    once when the run has several open tasks (parallel branches), each in its task's workdir.

    Each task goes to its role's command (`agents`); the command's line is who submits its output.

    Raises:
        AgentCannotStart: the agent command could not be started; the run is left as it is.
        InvalidArgument: a role has no command, or a judge gate would go to the command it judges.
    """
    spec = runs.spec_of(view.run_id)
    goal = spec.goal
    agents.check(spec)
    said_waiting = False
    progress.parallel = jobs > 1
    while view.status in ACTIVE:
        if len(view.tasks) > 1 and jobs > 1:
            said_waiting = False
            view = _fan_out(runs, view, agents, progress, goal=goal, tasks=view.tasks[:jobs])
            if watcher is not None:
                watcher.catch_up()
        elif view.tasks:
            said_waiting = False
            task = view.tasks[0]
            _show_task(progress, task)
            payload = {**task.model_dump(), "run_id": view.run_id, "goal": goal}
            command = agents.for_role(task.agent)
            done = _call(command.argv, payload, _where(runs, view, task), progress.output_line)
            _report(progress, task, done, tail=list(progress.tail))
            progress.now_doing("checking the output" if done[1] is None else "recording the failure")
            view = _submit(runs, view.run_id, task, done, by=command.identity)
            if watcher is not None:
                watcher.catch_up()
        elif view.status == "paused":
            break  # a person must fix the setup first (the view's error says what); resume continues
        elif view.status == "waiting_approval":
            if not said_waiting:
                progress.say(Text(f"waiting for approval: {for_person(view.next_action)}", style="yellow"))
                progress.now_doing("waiting for approval")
                said_waiting = True
            time.sleep(poll_seconds)
            view = runs.get_run(view.run_id)
        else:
            before = view.updated_at
            progress.now_doing("resuming")
            view = runs.resume(view.run_id)
            if watcher is not None:
                watcher.catch_up()
            if view.updated_at == before and not view.tasks:
                time.sleep(poll_seconds)
    return view


def summary_line(view: RunView, fold: MetricsFold | None, seconds: float) -> str:
    """One line: status, steps, turns, gates, duration (what --quiet prints)."""
    done = sum(s.status == "completed" for s in view.steps)
    parts = [f"{done} of {plural(len(view.steps), 'step')} done", plural(view.turn, "turn")]
    if fold is not None and fold.gates:
        passed = sum(g.passed for g in fold.gates.values())
        failed = sum(g.failed for g in fold.gates.values())
        parts.append(f"gates {passed} passed, {failed} failed")
    parts.append(f"{seconds:.1f} s")
    line = f"run {view.run_id} {view.status}: " + ", ".join(parts)
    if view.error and view.status != "completed":
        line += f"; reason: {short(view.error, 300)}"
    return line


def show_end(
    console: Console, view: RunView, fold: MetricsFold | None, seconds: float, *, quiet: bool
) -> None:
    """Print how the run ended: a summary line, then (unless `quiet`) the final output or the error."""
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(view.status, "white")
    console.print(
        Text(summary_line(view, fold, seconds), style=f"bold {colour}"), highlight=False, soft_wrap=True
    )
    if quiet:
        return
    if view.status == "completed":
        console.print_json(json.dumps(view.final_output, default=str))
    elif view.status in ACTIVE:
        console.print(f"  next: {for_person(view.next_action)}", highlight=False, markup=False)
