"""`loopengt run --agent CMD`: drive a run from the terminal, giving each agent task to a command.

The command gets the task (as in the RunView, plus `run_id` and `goal`) as JSON on stdin; its stdout
is the output (parsed as JSON when it is JSON, else the stripped text); a non-zero exit is a failed
attempt with stderr as the error. Everything else (gates, commands, retries) is the service's job.

What the person sees (`Progress`): on a terminal, one live line (step, attempt, what runs, elapsed
time) with the last lines of the agent's stderr under it, redrawn in place; elsewhere (a pipe, a log
file) plain lines only, no control characters. Gates and command steps run inside `Runs.step`; a
`Watcher` thread reads the run's events meanwhile (from its own store handle, read-only) to say which
one runs and how it ended, and `Runs(on_command=Progress.command_started)` lets the live line show the
running command's last output lines. `--quiet`: only the summary line at the end, and errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from loopengt_core.budget import Usage, parse_usage
from loopengt_core.commands import Peek
from loopengt_core.errors import InvalidArgument, LoopengtError
from loopengt_core.events import (
    ApprovalRequested,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    Event,
    GateFailed,
    GatePassed,
    RetryScheduled,
    StepFailed,
)
from loopengt_core.limits import MAX_JSON_DEPTH, MAX_USAGE_BYTES, checked, too_deep
from loopengt_core.metrics import MetricsFold
from loopengt_core.reading import RunReader
from loopengt_core.runs import Runs
from loopengt_core.spec import LoopSpec
from loopengt_core.state import Command, TaskView
from loopengt_core.view import RunView
from loopengt_server.wording import for_person, plural

ERROR_TAIL_CHARS = 2000
USAGE_FILE_ENV = "LOOPENGT_USAGE_FILE"  # where an agent may write what its work used (step's usage)
TAIL_LINES = 3  # lines of the agent's stderr / a gate's output shown
ACTIVE = ("running", "waiting_approval", "paused")
WATCH_SECONDS = 0.25
_LINE_CHARS = 160
# one agent call: (output, error, usage, why usage is unknown, seconds)
Called = tuple[Any, str | None, Usage | None, str | None, float]


class AgentCannotStart(LoopengtError):
    """The agent command could not be started at all (not found, not executable)."""

    code = "agent_cannot_start"


def _short(text: str, limit: int = _LINE_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _last_lines(text: str, count: int = TAIL_LINES) -> list[str]:
    return [_short(x) for x in text.strip().splitlines() if x.strip()][-count:]


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return (
        f"{whole // 60}:{whole % 60:02d}"
        if whole < 3600
        else f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    )


def agent_argv(agent: str, cwd: Path) -> list[str]:
    """`--agent` as an argv whose program exists; InvalidArgument saying how to fix it otherwise.

    Checked before a run is created, so that a typo never leaves a run nobody drives.
    """
    example = "--agent 'python3 examples/agent.py'"
    try:
        argv = shlex.split(agent)
    except ValueError as exc:
        raise InvalidArgument(
            f"--agent {agent!r} is not a command line ({exc}); quote it as in a shell, e.g. {example}"
        ) from None
    if not argv:
        raise InvalidArgument(f"--agent needs a command, e.g. {example}")
    program = argv[0]
    if "/" in program or (os.altsep and os.altsep in program):
        path = Path(program) if Path(program).is_absolute() else cwd / program
        if not path.is_file():
            raise InvalidArgument(
                f"agent command not found: {program} (no such file from {cwd}); fix the path in --agent"
            )
        if not os.access(path, os.X_OK):
            raise InvalidArgument(
                f"agent command {program} is not executable: `chmod +x {program}`, or run it through its "
                f"interpreter (--agent 'python3 {program}')"
            )
    elif shutil.which(program) is None:
        raise InvalidArgument(
            f"agent command not found: {program!r} is not on PATH; install it, give its path, or fix --agent "
            f"(e.g. {example})"
        )
    return argv


ROLE_PREFIX = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})=(.*)$", re.DOTALL)


@dataclass(frozen=True)
class AgentCommand:
    """One agent command: its argv and the text it was given as (its identity, `headless:<text>`)."""

    text: str
    argv: list[str]

    @property
    def identity(self) -> str:
        """Who submits its outputs: each command line is its own caller (judge gates refuse the same one)."""
        return f"headless:{self.text}"


@dataclass(frozen=True)
class Agents:
    """The agent commands of a headless run: `--agent CMD` (every role) and `--agent ROLE=CMD` (one role)."""

    default: AgentCommand | None
    roles: dict[str, AgentCommand] = field(default_factory=dict)

    def for_role(self, role: str) -> AgentCommand:
        """The command that does `role`'s tasks: its own `--agent ROLE=CMD`, else the bare `--agent CMD`.

        Raises:
            InvalidArgument: no command serves the role.
        """
        found = self.roles.get(role, self.default)
        if found is None:
            given = ", ".join(self.roles)
            raise InvalidArgument(
                f"no agent command for role '{role}' (--agent given for: {given}); add --agent {role}=CMD, "
                "or a bare --agent CMD for every other role"
            )
        return found

    def check(self, spec: LoopSpec) -> None:
        """Before driving: every named role exists, and no judge gate's judge is its judged step's command."""
        names = [a.name for a in spec.agents]
        for role in self.roles:
            if role not in names:
                raise InvalidArgument(
                    f"--agent {role}=...: the spec has no agent '{role}' (agents: {', '.join(names) or 'none'})"
                )
        gates = {g.name: g for g in spec.policy.verification_gates}
        for step in spec.steps:
            for name in step.verification_gates:
                rule = gates[name].judge if name in gates else None
                if rule is None or step.agent is None:
                    continue
                worker, judge = self.for_role(step.agent), self.for_role(rule.agent)
                if worker.text == judge.text:
                    raise InvalidArgument(
                        f"judge gate '{name}' has role '{rule.agent}' judge step '{step.name}' (role "
                        f"'{step.agent}'), but both roles go to the same agent command ({worker.text!r}), "
                        f"which would judge its own output; give the judge its own: --agent {rule.agent}=CMD"
                    )


def agents_from(given: list[str], cwd: Path) -> Agents:
    """`--agent` options as Agents: `ROLE=CMD` for one role (repeatable), a bare `CMD` for the others.

    Raises InvalidArgument (saying how to fix it) for a command that cannot be found, a role given twice
    or two bare commands.
    """
    default: AgentCommand | None = None
    roles: dict[str, AgentCommand] = {}
    for text in given:
        match = ROLE_PREFIX.match(text)
        if match is not None:
            role, command = match.group(1), match.group(2).strip()
            if role in roles:
                raise InvalidArgument(f"--agent {role}=... is given twice; give each role one command")
            roles[role] = AgentCommand(command, agent_argv(command, cwd))
        elif default is not None:
            raise InvalidArgument(
                "--agent CMD (for every role) is given twice; name the role of the others: --agent ROLE=CMD"
            )
        else:
            default = AgentCommand(text, agent_argv(text, cwd))
    return Agents(default, roles)


def parse_output(stdout: str) -> Any:
    """An agent's stdout as the task's output: JSON when it parses, else the text.

    Raises:
        InvalidArgument: JSON nested past the depth limit.
    """
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:  # JSON nested past Python's parser: past the depth limit too
        raise too_deep("the agent's output", MAX_JSON_DEPTH.get()) from None


def read_usage(path: Path) -> tuple[Usage | None, str | None]:
    """The usage an agent wrote to `$LOOPENGT_USAGE_FILE` (JSON, as `step`'s usage), and why it could not
    be taken: no file is unknown usage, never zero; a bad one is unknown usage with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {USAGE_FILE_ENV}: {exc.strerror or exc}"
    try:
        return parse_usage(checked(json.loads(text), "usage", MAX_USAGE_BYTES)[0]), None
    except ValueError:
        return None, f"{USAGE_FILE_ENV} does not hold JSON"
    except LoopengtError as exc:
        return None, exc.message


def call_agent(
    argv: list[str],
    payload: dict[str, Any],
    cwd: str,
    on_stderr: Callable[[str], None] | None = None,
    *,
    usage_file: Path | None = None,
) -> tuple[Any, str | None]:
    """(output, None) on success, (None, error) when the agent command failed.

    Its stderr is read as it comes (each line to `on_stderr`) and its tail kept for the error.
    `usage_file`: named to the agent as $LOOPENGT_USAGE_FILE, where it may write what the work used.

    Raises:
        AgentCannotStart: the program cannot be started (not found, not executable).
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, USAGE_FILE_ENV: str(usage_file)} if usage_file is not None else None,
        )
    except FileNotFoundError:
        raise AgentCannotStart(f"agent command not found: {argv[0]} (from {cwd})") from None
    except PermissionError:
        raise AgentCannotStart(f"agent command {argv[0]} cannot start: permission denied") from None
    except OSError as exc:
        raise AgentCannotStart(f"agent command {argv[0]} cannot start: {exc.strerror or exc}") from None
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stderr: deque[str] = deque(maxlen=200)

    def feed(stream: IO[str]) -> None:
        try:
            stream.write(json.dumps(payload))
            stream.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the agent did not read its task; its exit status says the rest

    def drain(stream: IO[str]) -> None:
        for line in stream:
            stderr.append(line.rstrip("\n"))
            if on_stderr is not None and line.strip():
                on_stderr(line.rstrip())

    threads = [
        threading.Thread(target=feed, args=(proc.stdin,), daemon=True),
        threading.Thread(target=drain, args=(proc.stderr,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        stdout = proc.stdout.read()
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    for thread in threads:
        thread.join(timeout=5)
    if code != 0:
        detail = "\n".join(stderr).strip()[-ERROR_TAIL_CHARS:] or f"the agent command exited with code {code}"
        return None, detail
    return parse_output(stdout), None


@dataclass
class _Branch:
    """A parallel branch's agent, gate or command running now (`--jobs` above 1): one live line each."""

    attempt: int
    doing: str
    since: float
    detail: str = ""


class Progress:
    """What `run` prints: the live line on a terminal, plain lines otherwise, only the summary when quiet.

    With `--jobs` above 1 the live line is a line per running branch (step, attempt, what runs there,
    its elapsed time), under a line with the total; plain lines name the branch they are about."""

    def __init__(self, console: Console, *, quiet: bool = False, live: bool | None = None) -> None:
        self.console = console
        self.quiet = quiet
        self.live = (console.is_terminal and not console.is_dumb_terminal) if live is None else live
        self.started = time.monotonic()
        self.step = ""
        self.attempt = 0
        self.doing = ""
        self.doing_since = self.started
        self.detail = ""
        self.peek: Peek | None = None  # the running gate's / command's output so far
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.parallel = False  # --jobs above 1: lines name the step (branch) they are about
        self.branches: dict[str, _Branch] = {}  # the branches running at once, by step
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="cyan")

    def __enter__(self) -> Progress:
        if self.live and not self.quiet:
            self._live = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, text: str | Text) -> None:
        """A line that stays (above the live line on a terminal)."""
        if self.quiet:
            return
        with self._lock:
            if isinstance(text, Text):
                self.console.print(text, highlight=False)
            else:
                self.console.print(text, highlight=False, markup=False)

    def now_doing(
        self, what: str, *, step: str | None = None, attempt: int | None = None, detail: str = ""
    ) -> None:
        """What runs now (`agent coder`, `gate tests`), shown with its elapsed time; `detail` (an argv) last.
        About a running branch's step: that branch's line."""
        with self._lock:
            branch = self.branches.get(step) if step is not None else None
            if branch is not None:
                if what != branch.doing:
                    branch.since = time.monotonic()
                branch.doing, branch.detail = what, detail
                if attempt:
                    branch.attempt = attempt
                return
            self.detail = detail
            if step is not None:
                self.step = step
            if attempt is not None:
                self.attempt = attempt
            if what != self.doing:
                self.doing_since = time.monotonic()
                self.tail.clear()
                self.peek = None
            self.doing = what

    def branch_started(self, task: TaskView, where: str) -> None:
        """A branch's agent starts (`--jobs`): its own live line; a plain line says where it works."""
        with self._lock:
            self.branches[task.step] = _Branch(task.attempt, f"agent {task.agent}", time.monotonic())
        if not self.live:
            self.say(f"  agent ({task.step}): running, attempt {task.attempt}, in {where}")

    def branch_ended(self, step: str) -> None:
        """A branch's task was submitted and judged: its line goes."""
        with self._lock:
            self.branches.pop(step, None)

    def command_started(self, command: Command, peek: Peek) -> None:
        """`Runs(on_command=...)`: a gate or a command step starts in this process; its output shows live."""
        what = f"gate {command.gate}" if command.kind == "gate" else "command"
        self.now_doing(what, step=command.step, detail=_short(" ".join(command.argv), 80))
        with self._lock:
            self.peek = peek

    def output_line(self, line: str) -> None:
        """A line of the agent's stderr as it comes: shown under the live line (kept for the tail)."""
        with self._lock:
            self.tail.append(_short(line))

    def _render(self) -> RenderableType:
        with self._lock:
            now = time.monotonic()
            parts = []
            if self.step:
                parts.append(f"step {self.step}")
            if self.attempt:
                parts.append(f"attempt {self.attempt}")
            if self.doing:
                parts.append(f"{self.doing} {_clock(now - self.doing_since)}")
            parts.append(f"total {_clock(now - self.started)}")
            if self.detail:
                parts.append(self.detail)
            self._spinner.update(text=Text(" · ".join(parts), no_wrap=True, overflow="ellipsis"))
            branches = [
                Text(
                    "  "
                    + " · ".join(
                        [f"step {step}", f"attempt {b.attempt}", f"{b.doing} {_clock(now - b.since)}"]
                        + ([b.detail] if b.detail else [])
                    ),
                    no_wrap=True,
                    overflow="ellipsis",
                )
                for step, b in self.branches.items()
            ]
            shown = _last_lines(self.peek() or "") if self.peek is not None else list(self.tail)
            tail = [Text(f"  │ {x}", style="dim", no_wrap=True, overflow="ellipsis") for x in shown]
        return Group(self._spinner, *branches, *tail)


class Watcher:
    """Reads the run's events while `Runs.step` works, to show which gate or command step runs and how it ended.

    It folds the log through a reader on a store handle of its own (no lock, no writes); the driver calls
    `catch_up()` after each step so that everything is said before the next task is.
    """

    def __init__(self, reader: RunReader, run_id: str, progress: Progress) -> None:
        self.reader = reader
        self.run_id = run_id
        self.progress = progress
        self.fold = MetricsFold()
        self._commands: dict[str, CommandRequested] = {}
        self._durations: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loopengt-watch", daemon=True)
        for event in reader.events(run_id):  # what happened before this command: counted, not said
            self._fold(event, say=False)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(LoopengtError):
            self.catch_up()

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            try:
                self.catch_up()
            except LoopengtError:  # a busy or briefly unreadable store: the next poll reads it
                continue

    def catch_up(self) -> None:
        """Fold and print the run's events recorded since the last look (from any process)."""
        with self._lock:
            after = self.fold.state.seq if self.fold.state is not None else 0
            for event in self.reader.events(self.run_id, after=after):
                self._fold(event, say=True)

    def _fold(self, event: Event, *, say: bool) -> None:
        self.fold.add(event)
        p = self.progress
        match event:
            case CommandRequested():
                self._commands[event.command_id] = event
            case CommandStarted() if say and event.command_id in self._commands:
                self._started(self._commands[event.command_id])
            case CommandFinished() if event.command_id in self._commands:
                self._finished(self._commands[event.command_id], event, say=say)
            case GatePassed() if say:
                took = self._durations.pop(event.gate, None)
                timing = f" ({took:.1f} s)" if took is not None else ""
                p.say(Text.assemble(f"  {self._gate(event.gate, event.step)}: ", ("pass", "green"), timing))
            case GateFailed() if say:
                took = self._durations.pop(event.gate, None)
                timing = f" ({took:.1f} s)" if took is not None else ""
                p.say(Text.assemble(f"  {self._gate(event.gate, event.step)}: ", ("fail", "red"), timing))
                for line in _last_lines(event.feedback or ""):
                    p.say(Text(f"    | {line}", style="dim"))
            case RetryScheduled() if say:
                p.say(f"  retrying step {event.step} (attempt {event.attempt})")
            case StepFailed() if say:
                p.say(Text(f"  step {event.step} failed: {_short(event.reason or '')}", style="red"))
            case ApprovalRequested() if say:
                p.now_doing(f"waiting for approval of gate {event.gate}", step=event.step)

    def _gate(self, gate: str, step: str) -> str:
        """`gate NAME`, and with --jobs above 1 the branch it is about: `gate NAME (step)`."""
        return f"gate {gate} ({step})" if self.progress.parallel else f"gate {gate}"

    def _started(self, command: CommandRequested) -> None:
        p = self.progress
        argv = " ".join(command.argv)
        if command.kind == "gate":
            p.now_doing(f"gate {command.gate}", step=command.step, detail=_short(argv, 80))
            what = self._gate(str(command.gate), command.step)
        else:
            p.now_doing("command", step=command.step, attempt=0, detail=_short(argv, 80))
            what = f"step {command.step} (command)"
        if not p.live:  # a log has no live line: say what starts, so a long gate is not silence
            p.say(f"  {what}: running {_short(argv, 100)}")

    def _finished(self, command: CommandRequested, event: CommandFinished, *, say: bool) -> None:
        seconds = event.duration_seconds
        if command.kind == "gate":
            self._durations[str(command.gate)] = seconds
            return
        if not say:
            return
        how = "timed out" if event.timed_out else f"exit {event.exit_code}"
        ok = event.exit_code == 0 and not event.timed_out
        mark = Text("ok", style="green") if ok else Text("failed", style="red")
        self.progress.say(
            Text.assemble(f"  step {command.step} (command): ", mark, f" ({how}, {seconds:.1f} s)")
        )
        if not ok:
            for line in _last_lines(event.output):
                self.progress.say(Text(f"    | {line}", style="dim"))


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
        lines = _last_lines(task.feedback, 1)
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
        for line in _last_lines(error):
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
        line += f"; reason: {_short(view.error, 300)}"
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
