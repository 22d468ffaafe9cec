"""`loopengt run --agent CMD`: drive a run from the terminal, giving each agent task to a command.

The command gets the task (as in the RunView, plus `run_id` and `goal`) as JSON on stdin; its stdout
is the output (parsed as JSON when it is JSON, else the stripped text); a non-zero exit is a failed
attempt with stderr as the error. Everything else (gates, commands, retries) is the service's job.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from typing import Any

from rich.console import Console

from loopengt_core.errors import InvalidArgument
from loopengt_core.runs import Runs
from loopengt_core.state import TaskView
from loopengt_core.view import RunView, StepAnswer

ERROR_TAIL_CHARS = 2000
ACTIVE = ("running", "waiting_approval", "paused")


def parse_output(stdout: str) -> Any:
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def call_agent(argv: list[str], payload: dict[str, Any], cwd: str) -> tuple[Any, str | None]:
    """(output, None) on success, (None, error) when the agent command failed."""
    try:
        done = subprocess.run(
            argv, input=json.dumps(payload), capture_output=True, text=True, cwd=cwd, check=False
        )
    except FileNotFoundError:
        raise InvalidArgument(f"agent command not found: {argv[0]}") from None
    if done.returncode != 0:
        detail = (
            done.stderr.strip()[-ERROR_TAIL_CHARS:] or f"the agent command exited with code {done.returncode}"
        )
        return None, detail
    return parse_output(done.stdout), None


def _show_answer(console: Console, answer: StepAnswer) -> None:
    for gate in answer.gate_results:
        mark = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow]waiting[/]"}[gate.passed]
        lines = [x for x in (gate.feedback or "").strip().splitlines() if x.strip()]
        console.print(
            f"    gate {gate.name}: {mark}" + (f" - {lines[-1][:160]}" if lines else ""), highlight=False
        )


def _show_task(console: Console, task: TaskView) -> None:
    console.print(
        f"[bold cyan]task[/] {task.task_id}  step [bold]{task.step}[/] attempt {task.attempt} agent {task.agent}",
        highlight=False,
    )
    if task.feedback:
        lines = [x for x in task.feedback.strip().splitlines() if x.strip()]
        console.print(f"    feedback: {lines[-1][:160]}", highlight=False)


def drive(runs: Runs, view: RunView, agent: str, console: Console, *, poll_seconds: float = 1.0) -> RunView:
    """Work through the run until it ends (or Ctrl-C, which leaves it resumable)."""
    argv = shlex.split(agent)
    if not argv:
        raise InvalidArgument("--agent needs a command, e.g. --agent 'python examples/agent.py'")
    goal = runs.spec_of(view.run_id).goal
    said_waiting = False
    while view.status in ACTIVE:
        if view.tasks:
            said_waiting = False
            task = view.tasks[0]
            _show_task(console, task)
            payload = {**task.model_dump(), "run_id": view.run_id, "goal": goal}
            # a fork bound to a git worktree works there (its commands run there too)
            where = view.workspace.root if view.workspace is not None else str(runs.cwd)
            output, error = call_agent(argv, payload, where)
            if error is not None:
                console.print(f"    [red]agent failed[/]: {error.splitlines()[-1][:160]}", highlight=False)
                answer = runs.step(view.run_id, task.task_id, None, outcome="failure", error=error)
            else:
                answer = runs.step(view.run_id, task.task_id, output)
            _show_answer(console, answer)
            view = answer
        elif view.status == "paused":
            break  # a person must fix the setup first (the view's error says what); resume continues
        elif view.status == "waiting_approval":
            if not said_waiting:
                console.print(f"[yellow]waiting for approval[/]: {view.next_action}", highlight=False)
                said_waiting = True
            time.sleep(poll_seconds)
            view = runs.get_run(view.run_id)
        else:
            before = view.updated_at
            view = runs.resume(view.run_id)
            if view.updated_at == before and not view.tasks:
                time.sleep(poll_seconds)
    return view


def show_end(console: Console, view: RunView) -> None:
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(view.status, "white")
    console.print(
        f"[bold {colour}]run {view.run_id} {view.status}[/] after {view.turn} turns", highlight=False
    )
    if view.error:
        console.print(f"  reason: {view.error}", highlight=False)
    if view.status == "completed":
        console.print_json(json.dumps(view.final_output, default=str))
