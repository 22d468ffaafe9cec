"""The `loopengt` command. Every error is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from loopengt_core.errors import LoopengtError

if TYPE_CHECKING:
    from collections.abc import Callable

    from loopengt_core.metrics import RunMetrics
    from loopengt_core.runs import Runs
    from loopengt_core.spec import LoopSpec
    from loopengt_core.view import RunView
    from loopengt_server.headless import Agents

app = typer.Typer(
    name="loopengt",
    help="Durable loop orchestration for coding agents (MCP server and CLI).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    str, typer.Option("--store", help="Store: a directory (default .loopengt) or postgresql://...")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the result (one line) and errors")
]

OutputOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer
    typer.Option("--output", "-o", help="Write here instead of stdout"),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"loopengt {version('loopengt')}")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
            typer.echo("loopengt (version unknown: not installed)")
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """Durable loop orchestration for coding agents (MCP server and CLI)."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `loopengt: <message>` on stderr; the Exit to raise with `code`."""
    typer.echo(f"loopengt: {message}", err=True)
    return typer.Exit(code)


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="Path to a loop.yaml")]) -> None:
    """Check a loop spec; print every problem with its location."""
    from loopengt_core.validation import SpecError, parse_text, read_spec_file, summary, validate_data

    try:
        data = parse_text(read_spec_file(spec))
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(
                f"{spec}: {problem}" if problem.location != str(spec) else f"{spec}: {problem.message}"
            )
        raise typer.Exit(1) from None
    loaded, problems = validate_data(data)
    if loaded is None or problems:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{spec}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", err=True)
        raise typer.Exit(1)
    typer.echo(summary(loaded))


@app.command()
def schema() -> None:
    """Print the JSON Schema of loop.yaml (for editors and agents)."""
    from loopengt_core.spec import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def templates() -> None:
    """List the built-in loop templates."""
    from rich.console import Console
    from rich.table import Table

    from loopengt_core.catalog import list_templates

    table = Table("name", "pattern", "description", box=None, pad_edge=False)
    for info in list_templates():
        table.add_row(info.name, info.pattern, info.description)
    Console(width=max(100, Console().width)).print(table)


@app.command()
def init(
    template: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option(
            "--template",
            "-t",
            help="Template name (see `loopengt templates`); default fix_tests unless only --client is given",
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the loop spec")] = Path(
        "loop.yaml"
    ),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing file (or replace our entry in a client's)")
    ] = False,
    clients: Annotated[
        list[str],
        typer.Option(
            "--client",
            "-c",
            help="Configure an editor: claude-code, cursor, vscode, codex or antigravity (repeatable)",
        ),
    ] = [],  # noqa: B006
    stop_hook: Annotated[
        bool,
        typer.Option(
            "--stop-hook",
            "--hooks",
            help="Also register the hooks `loopengt hook stop` and `loopengt hook session` "
            "(claude-code, cursor, vscode, codex)",
        ),
    ] = False,
    write_home: Annotated[
        bool,
        typer.Option(
            "--write-home",
            "--yes",
            "-y",
            help="Let init change files in your home (codex: ~/.codex; antigravity: ~/.gemini/antigravity)",
        ),
    ] = False,
    project: Annotated[
        Path, typer.Option("--project", help="The project folder the client files go to")
    ] = Path("."),
    test_command: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option(
            "--test-command", help="fix_tests: the project's test command (default: detected from its files)"
        ),
    ] = None,
) -> None:
    """Write a loop.yaml from a template, and/or configure editors (--client) to use loopengt."""
    if test_command is not None and (template or "fix_tests") != "fix_tests":
        raise fail("--test-command is for --template fix_tests", 2)
    if clients or stop_hook:
        _init_clients(clients, project, stop_hook=stop_hook, write_home=write_home, force=force)
        if template is None:
            return
    _init_spec(template or "fix_tests", output, force, test_command)


def _init_clients(
    clients: list[str], project: Path, *, stop_hook: bool, write_home: bool, force: bool
) -> None:
    from loopengt_server import clients as setup

    chosen = list(dict.fromkeys(clients))
    names, hook_names = setup.client_names(), setup.hook_client_names()  # with the plugins' clients
    unknown = [c for c in chosen if c not in names]
    if unknown:
        try:
            setup.record(unknown[0])  # names a broken plugin when one has that name
        except LoopengtError as exc:
            raise fail(exc.message, 2) from None
    if stop_hook and not any(c in hook_names for c in chosen):
        raise fail(f"--stop-hook needs --client {' or --client '.join(hook_names)}", 2)
    for client in chosen:
        for change in setup.init_client(client, project, hooks=stop_hook, write_home=write_home, force=force):
            if change.action == "print":
                typer.echo(
                    f"{client}: add this to {change.path} ({change.note}):\n{change.snippet}", nl=False
                )
            else:
                typer.echo(
                    f"{client}: {change.action} {change.path}" + (f": {change.note}" if change.note else "")
                )
        if stop_hook and client not in hook_names:
            typer.echo(f"{client}: no hooks to register (only {', '.join(hook_names)} have them)")
    if setup.loopengt_on_path() is None:
        typer.echo(
            f"note: `loopengt` is not on PATH; the editors run `loopengt serve`, so put {Path(sys.executable).parent} "
            "on PATH (or install loopengt with pipx)",
            err=True,
        )


def _init_spec(template: str, output: Path, force: bool, test_command: str | None = None) -> None:
    import shlex

    from loopengt_core.catalog import template_text
    from loopengt_core.spec import json_schema
    from loopengt_core.testcommand import GIVEN, Detected, detect_test_command, with_test_command

    text = template_text(template)
    if output.exists() and not force:
        raise fail(f"{output} exists; pass --force to overwrite it")
    chosen = None
    if template == "fix_tests":
        try:
            argv = shlex.split(test_command) if test_command is not None else []
        except ValueError as exc:
            raise fail(f"--test-command: {exc}", 2) from None
        if test_command is not None and not argv:
            raise fail("--test-command is empty", 2)
        chosen = Detected(argv, GIVEN) if argv else detect_test_command(output.parent.resolve())
        text = with_test_command(text, chosen.argv)
    schema_file = output.parent / "loop-spec.schema.json"
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("# yaml-language-server:"):
        lines = lines[1:]
    header = f"# yaml-language-server: $schema={schema_file.name}\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(header + "".join(lines), encoding="utf-8")
    if not schema_file.exists():
        schema_file.write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
    typer.echo(f"wrote {output} (template {template}); check it with: loopengt validate {output}")
    if chosen is not None:
        typer.echo(chosen.line())


def _runs(store: str, **options: Any) -> Runs:
    """The runs service for a command: it waits for the commands it starts (a CLI process that answered
    early would end them with it)."""
    import math

    from loopengt_core.runs import Runs
    from loopengt_core.store import open_store

    return Runs(open_store(store), call_wait=math.inf, **options)


def _inputs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise fail(f"--input takes name=value (got {pair!r})", 2)
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


def _check_spec(spec: str) -> LoopSpec:
    """The spec file is readable and valid, or one line naming the file, its first problems and the fix."""
    from loopengt_core.validation import SpecError, load_spec, read_spec_file

    try:
        return load_spec(read_spec_file(spec), source=spec)
    except SpecError as exc:
        problems = "; ".join(p.message if p.location == spec else str(p) for p in exc.problems[:3]) + (
            f" (and {len(exc.problems) - 3} more)" if len(exc.problems) > 3 else ""
        )
        about_the_file = all(p.location == spec for p in exc.problems)  # missing, unreadable: no more to see
        hint = "" if about_the_file else f"; see every problem with: loopengt validate {spec}"
        raise fail(f"{spec}: {problems}{hint}") from None


@app.command()
def run(
    spec: Annotated[Optional[str], typer.Argument(help="Path to a loop.yaml")] = None,  # noqa: UP045 - typer
    agent: Annotated[
        list[str],
        typer.Option(
            "--agent",
            help="Command that does each agent task (task JSON on stdin); ROLE=CMD: the command of one "
            "agent role (repeatable; a judge gate's judge needs its own)",
        ),
    ] = [],  # noqa: B006
    inputs: Annotated[
        list[str], typer.Option("--input", "-i", help="Run input name=value (repeatable)")
    ] = [],  # noqa: B006
    template: Annotated[Optional[str], typer.Option("--template", help="Run a built-in template")] = None,  # noqa: UP045
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue this run id")] = None,  # noqa: UP045
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Id for the new run")] = None,  # noqa: UP045
    context_from: Annotated[
        list[str],
        typer.Option(
            "--context-from", help="An earlier run whose outputs the tasks get (input.memory; repeatable)"
        ),
    ] = [],  # noqa: B006
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j", min=1, help="Agents run at once on parallel branches, each in its own workdir"
        ),
    ] = 1,
    quiet: QuietOption = False,
    store: StoreOption = ".loopengt",
) -> None:
    """Drive a run headless: each agent task goes to --agent (or its role's); exit 0 only if the run completed."""
    agents = _agents(agent, "python3 examples/agent.py")
    if sum(x is not None for x in (spec, template, resume)) != 1:
        raise fail("give exactly one of SPEC, --template NAME or --resume RUN_ID", 2)
    if spec is not None:
        try:  # before the run exists: a judge without its own command must not leave a run behind
            agents.check(_check_spec(spec))
        except LoopengtError as exc:
            raise fail(exc.message, 2) from None

    def begin(runs: Runs) -> RunView:
        if resume is not None:
            return runs.resume(resume)
        return runs.start_run(
            spec_path=spec,
            template=template,
            inputs=_inputs(inputs),
            run_id=run_id,
            context_from=context_from or None,
        )

    view = _headless(
        begin, agents, _agent_options(agent), store, quiet=quiet, new=resume is None, run_id=run_id, jobs=jobs
    )
    raise typer.Exit(0 if view.status == "completed" else 1)


def _agents(given: list[str], example: str) -> Agents:
    """`--agent` options as commands, checked before a run exists: a typo must not leave a run that nobody
    drives."""
    from loopengt_server.headless import agents_from

    if not given or not any(g.strip() for g in given):
        raise fail(f"--agent is required, e.g. --agent '{example}'", 2)
    try:
        return agents_from(given, Path.cwd())
    except LoopengtError as exc:
        raise fail(exc.message, 2) from None


def _agent_options(given: list[str]) -> str:
    """The --agent options as typed again in a hint (`--agent 'python3 a.py' --agent critic=...`)."""
    import shlex

    return " ".join(f"--agent {shlex.quote(g)}" for g in given)


def _headless(
    begin: Callable[[Runs], RunView],
    agents: Agents,
    agent: str,
    store: str,
    *,
    quiet: bool,
    new: bool,
    run_id: str | None = None,
    final_output: bool = True,
    jobs: int = 1,
) -> RunView:
    """Start or continue a run with `begin`, drive it with the agent command to its end, print the end.

    Shared by `run` and `design`. A run this call creates ends `failed` if its agent cannot start; a run
    it continues is kept as it was. Ctrl-C leaves the run resumable (exit 130). `final_output=False`:
    the caller says what came of a completed run (design writes it to a file).
    """
    import time

    from rich.console import Console

    from loopengt_core.reading import RunReader
    from loopengt_core.store import open_store
    from loopengt_server.headless import AgentCannotStart, Progress, Watcher, drive, show_end

    console = Console(highlight=False, soft_wrap=True)
    progress = Progress(console, quiet=quiet)
    runs = _runs(store, allow_inline_commands=False, on_command=progress.command_started)
    started = time.monotonic()
    created = new and not (run_id is not None and runs.reader.exists(run_id))
    view = begin(runs)
    progress.say(f"run {view.run_id} ({view.loop}) in {store}")
    watched = RunReader(open_store(store))
    try:
        with progress, Watcher(watched, view.run_id, progress) as watcher:
            try:
                view = drive(runs, view, agents, progress, watcher, jobs=jobs)
            except AgentCannotStart as exc:
                if created:
                    runs.fail_run(view.run_id, f"the agent command cannot start: {exc.message}")
                    raise fail(
                        f"{exc.message}; run {view.run_id} failed. Fix --agent and start again"
                    ) from None
                raise fail(
                    f"{exc.message}; run {view.run_id} is kept as it was. Fix --agent and continue with: "
                    f"loopengt run --resume {view.run_id} --agent CMD"
                ) from None
            except KeyboardInterrupt:
                progress.quiet = False
                progress.say(
                    f"interrupted; the run is saved. Continue with: loopengt run --resume {view.run_id} {agent}"
                )
                raise typer.Exit(130) from None
    finally:
        watched.close()
    shown = quiet or (not final_output and view.status == "completed")
    show_end(console, view, watcher.fold, time.monotonic() - started, quiet=shown)
    if view.status == "paused" and not quiet:
        console.print(f"  once fixed, continue with: loopengt run --resume {view.run_id} {agent}")
    return view


@app.command()
def design(
    goal: Annotated[str, typer.Argument(help="What the loop should achieve")],
    agent: Annotated[
        str, typer.Option("--agent", help="Command that drafts the spec (task JSON on stdin, JSON on stdout)")
    ] = "",
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the loop spec")] = Path(
        "loop.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file")] = False,
    quiet: QuietOption = False,
    store: StoreOption = ".loopengt",
) -> None:
    """Design a loop.yaml for GOAL: a run of the `design` template, driven by --agent; writes --output."""
    from loopengt_server.design import DESIGN_TEMPLATE, design_output

    if not goal.strip():
        raise fail("GOAL is empty: say what the loop should achieve", 2)
    if output.exists() and not force:
        raise fail(f"{output} exists; pass --force to overwrite it, or --output another path")
    if not output.parent.is_dir():
        raise fail(f"--output {output}: the folder {output.parent} does not exist")
    agents = _agents([agent] if agent else [], "python3 designer.py")

    def begin(runs: Runs) -> RunView:
        return runs.start_run(template=DESIGN_TEMPLATE, inputs={"goal": goal})

    view = _headless(begin, agents, _agent_options([agent]), store, quiet=quiet, new=True, final_output=False)
    if view.status != "completed":
        raise fail(f"the design run {view.run_id} ended {view.status}: nothing was written to {output}")
    try:
        written = design_output(view.final_output, output)
    except LoopengtError as exc:
        raise fail(exc.message) from None
    typer.echo(f"wrote {output}: {written}; run it with: loopengt run {output} --agent CMD")


@app.command("runs")
def list_runs_command(
    status: Annotated[Optional[str], typer.Option("--status", help="Only runs with this status")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", help="At most this many")] = 50,
    store: StoreOption = ".loopengt",
) -> None:
    """List runs, newest first."""
    from rich.console import Console
    from rich.table import Table

    table = Table("run_id", "loop", "status", "turn", "started", "parent", box=None, pad_edge=False)
    for s in _runs(store).list_runs(status=status, limit=limit):
        loop = s.loop if s.error is None else s.error  # a corrupt or unreadable run says why
        table.add_row(s.run_id, loop, s.status, str(s.turn), s.started_at, s.parent_run_id or "")
    Console(width=160).print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    trace: Annotated[bool, typer.Option("--trace", help="Also print the events")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the RunView as JSON")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Watch the run live until it ends (exit 0 if completed)")
    ] = False,
    store: StoreOption = ".loopengt",
) -> None:
    """Show a run's state (and with --trace its events); --follow watches it live until it ends.

    With --json: one JSON document, the RunView; with --trace also, its events under "trace".
    """
    from rich.console import Console

    from loopengt_core.budget import Usage, spend_text, usage_text
    from loopengt_core.events import GateFailed, GatePassed, event_data, to_record
    from loopengt_server.wording import for_person, plural

    if follow:
        _follow(run_id, store, as_json)
    runs = _runs(store)
    view = runs.get_run(run_id)
    if as_json:
        doc = view.model_dump(mode="json")
        if trace:
            doc["trace"] = [to_record(event) for event in runs.trace(run_id)]
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    console = Console(highlight=False, width=160)
    console.print(f"[bold]{view.run_id}[/] loop {view.loop}: [bold]{view.status}[/], turn {view.turn}")
    if view.error:
        console.print(f"  reason: {view.error}", markup=False)
    if view.spend.submissions:
        console.print(f"  spend: {spend_text(view.spend, view.spend.submissions)}", markup=False)
    if view.budget_warning:
        console.print(f"  budget warning: {view.budget_warning}", markup=False)
    for step in view.steps:
        known = step.spend.reported or step.spend.costed or step.spend.tokens
        used = f", {spend_text(step.spend)}" if known else ""
        console.print(f"  step {step.name}: {step.status} ({plural(step.attempts, 'attempt')}{used})")
    for task in view.tasks:
        console.print(f"  open task {task.task_id} (step {task.step}, attempt {task.attempt})")
    console.print(f"  next: {for_person(view.next_action)}", markup=False)
    if trace:
        for event in runs.trace(run_id):
            detail = json.dumps(event_data(event), default=str)
            usage = getattr(event, "usage", None)  # after the cut, so a long output never hides it
            spent = f" [{usage_text(usage)}]" if isinstance(usage, Usage) else ""
            typer.echo(f"{event.seq:>5} {event.at} {event.type} {detail[:200]}{spent}")
            score = getattr(event, "score", None)  # a judge gate's verdict: its score and every reason
            if isinstance(score, float) and isinstance(event, GatePassed | GateFailed):
                typer.echo(
                    f"      judge score {score:g}; " + (event.feedback or "").replace("\n", "\n      ")
                )


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving")] = False,
    comment: Annotated[
        str | None, typer.Option("--comment", help="Why; becomes feedback on rejection")
    ] = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Answer the approval gate a run waits at."""
    import getpass

    from loopengt_server.wording import for_person

    view = _runs(store).approve(run_id, approved=not reject, comment=comment, by=getpass.getuser(), via="cli")
    typer.echo(
        f"{'rejected' if reject else 'approved'}; run {run_id} is now {view.status}: "
        f"{for_person(view.next_action)}"
    )


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    reason: Annotated[str, typer.Option("--reason")] = "cancelled from the terminal",
    store: StoreOption = ".loopengt",
) -> None:
    """Cancel a run."""
    view = _runs(store).cancel_run(run_id, reason)
    typer.echo(f"run {run_id} {view.status}")


@app.command()
def checkpoint(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    label: Annotated[Optional[str], typer.Option("--label")] = None,  # noqa: UP045
    store: StoreOption = ".loopengt",
) -> None:
    """Take a checkpoint of a run (fork from it later with `resume --checkpoint`)."""
    info = _runs(store).checkpoint(run_id, label)
    kept = f"; files kept as commit {info.commit[:12]}" if info.commit else ""
    typer.echo(f"checkpoint {info.checkpoint_id} at seq {info.seq}{kept}")


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    checkpoint_id: Annotated[
        str | None, typer.Option("--checkpoint", help="Fork a new run from here")
    ] = None,
    accept_drift: Annotated[
        bool, typer.Option("--accept-drift", help="Record files changed outside the loop and continue")
    ] = False,
    worktree: Annotated[
        str | None, typer.Option("--worktree", help="With --checkpoint: a new git worktree for the fork")
    ] = None,
    budget_tokens: Annotated[
        Optional[int],  # noqa: UP045 - typer
        typer.Option("--budget-tokens", help="Raise the run's max_tokens to N"),
    ] = None,
    budget_usd: Annotated[
        Optional[float],  # noqa: UP045 - typer
        typer.Option("--budget-usd", help="Raise the run's max_cost_usd"),
    ] = None,
    budget_seconds: Annotated[
        Optional[float],  # noqa: UP045 - typer
        typer.Option("--budget-seconds", help="Raise the run's max_wall_seconds"),
    ] = None,
    hint: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option("--hint", help="Feedback to the next attempt (a stuck run)"),
    ] = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Continue a run, or fork a new one from a checkpoint; prints the run's next action."""
    from loopengt_server.wording import for_person

    raised = {
        key: value
        for key, value in (
            ("max_tokens", budget_tokens),
            ("max_cost_usd", budget_usd),
            ("max_wall_seconds", budget_seconds),
        )
        if value is not None
    }
    view = _runs(store).resume(
        run_id,
        checkpoint_id,
        accept_drift=accept_drift,
        worktree=worktree,
        budget=raised or None,
        hint=hint,
    )
    where = f" in {view.workspace.root}" if worktree and view.workspace else ""
    typer.echo(f"run {view.run_id}{where} {view.status}: {for_person(view.next_action)}")


@app.command()
def diff(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    checkpoint_id: Annotated[
        str | None, typer.Option("--from", help="From this checkpoint (default: the run's start)")
    ] = None,
    stat: Annotated[bool, typer.Option("--stat", help="Only a diffstat")] = False,
    store: StoreOption = ".loopengt",
) -> None:
    """git diff of a run's files: from its start (or a checkpoint) to the work tree as it is now."""
    sys.stdout.write(_runs(store).diff(run_id, checkpoint_id, stat=stat))


@app.command()
def check(
    store: StoreOption = ".loopengt",
    repair: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option(
            "--repair",
            metavar="RUN_ID",
            help="Cut this run's log after its last good event (the original is kept beside it)",
        ),
    ] = None,
) -> None:
    """Verify the store: checksums, seq continuity, snapshots and checkpoints of every run."""
    from loopengt_core.check import check_store, repair_run
    from loopengt_core.store import open_store
    from loopengt_server.wording import plural

    if repair is not None:
        typer.echo(repair_run(open_store(store), repair))
        raise typer.Exit(0)
    results = check_store(open_store(store))
    bad = [r for r in results if r.problems]
    for result in bad:
        for problem in result.problems:
            typer.echo(f"{result.run_id}: {problem}")
    events = sum(r.events for r in results)
    typer.echo(f"checked {plural(len(results), 'run')}, {plural(events, 'event')}: {len(bad)} with problems")
    raise typer.Exit(1 if bad else 0)


def _follow(run_id: str, store: str, as_json: bool) -> None:
    from loopengt_core.reading import RunReader
    from loopengt_core.store import check_id, open_store
    from loopengt_server.follow import follow as watch

    if as_json:
        raise fail("--follow draws a live view; use --json without --follow, or --trace for the events", 2)
    check_id(run_id)
    reader = RunReader(open_store(store))
    try:
        final = watch(reader, run_id)
    finally:
        reader.close()
    raise typer.Exit(0 if final.status == "completed" else 1)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} bytes"  # pragma: no cover - the loop always returns


class _MissingOption(typer.BadParameter):
    """An option that is needed only when another one is absent (typer exports no MissingParameter)."""

    def format_message(self) -> str:
        return f"Missing option {self.param_hint}. {self.message}"


@app.command()
def prune(
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Age since the run ended: 30d, 12h, 90m, 2w, 1d12h")
    ] = None,
    statuses: Annotated[
        list[str],
        typer.Option("--status", help="completed, failed or cancelled (repeatable; default: all three)"),
    ] = [],  # noqa: B006
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; delete nothing")] = False,
    worktrees: Annotated[
        bool,
        typer.Option(
            "--worktrees",
            help="Remove the git worktrees of every ended run (isolation: worktree) and its isolated steps' "
            "branches; the runs, and the joins' branches, stay",
        ),
    ] = False,
    store: StoreOption = ".loopengt",
) -> None:
    """Delete ended runs older than --older-than (their worktrees too); running, paused and waiting runs are
    never touched. --worktrees: remove only the worktrees of ended runs."""
    from datetime import UTC, datetime

    from loopengt_core.retention import check_statuses, parse_age
    from loopengt_core.retention import prune as prune_runs
    from loopengt_core.store import open_store
    from loopengt_server.wording import plural

    if older_than is None and not worktrees:
        raise _MissingOption(
            "give it to delete ended runs, or give --worktrees to remove their worktrees",
            param_hint="'--older-than'",
        )
    chosen = check_statuses(statuses)
    if older_than is None:
        runs = _runs(store)
        ended = [r.run_id for r in runs.list_runs(limit=1_000_000) if r.status in chosen]
        _prune_worktrees(runs, ended, dry_run)
        return
    age = parse_age(older_than)
    opened = open_store(store)
    try:
        if not dry_run:  # the worktrees of the runs about to go, first: a run's record names them
            going = prune_runs(opened, older_than=age, now=datetime.now(UTC), statuses=chosen, dry_run=True)
            if going.runs:
                _prune_worktrees(_runs(store), [r.run_id for r in going.runs], dry_run, quiet=True)
        report = prune_runs(opened, older_than=age, now=datetime.now(UTC), statuses=chosen, dry_run=dry_run)
    finally:
        opened.close()
    verb = "would delete" if dry_run else "deleted"
    for run in report.runs:
        typer.echo(
            f"{verb} {run.run_id} ({run.status}, ended {run.ended_at}, {plural(run.events, 'event')}, "
            f"{_size(run.bytes)})"
        )
    for run_id, reason in report.skipped:
        typer.echo(f"skipped {run_id}: {reason}", err=True)
    typer.echo(
        f"{'dry run: ' if dry_run else ''}{verb} {plural(len(report.runs), 'run')} "
        f"({', '.join(chosen)}; ended more than {older_than} ago): {plural(report.events, 'event')}, "
        f"{_size(report.bytes)} of run data"
    )
    if report.leftovers:
        typer.echo(
            f"{'would remove' if dry_run else 'removed'} {plural(report.leftovers, 'temp file')} left by interrupted "
            f"writes ({_size(report.leftover_bytes)})"
        )


def _prune_worktrees(runs: Runs, run_ids: list[str], dry_run: bool, *, quiet: bool = False) -> None:
    """Remove the worktrees (and isolated steps' branches) of ended runs; say what went."""
    from loopengt_server.wording import plural

    if dry_run:
        typer.echo(f"dry run: would remove the worktrees of {plural(len(run_ids), 'ended run')}")
        return
    removed = [what for run_id in run_ids for what in runs.prune_worktrees(run_id)]
    for what in removed:
        typer.echo(f"removed {what}")
    if not quiet:
        typer.echo(f"removed {plural(len(removed), 'worktree or branch', 'worktrees and branches')}")


@app.command("export")
def export_command(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    output: OutputOption = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Write a run (spec, events, checkpoints) as one JSON file that `loopengt import` reads."""
    from loopengt_core.portability import write_export
    from loopengt_core.store import open_store

    opened = open_store(store)
    try:
        if output is None:
            write_export(opened, run_id, sys.stdout.write)  # streamed: a long run is never whole in memory
            return
        temp = output.with_name(f".{output.name}.tmp")
        try:
            with temp.open("w", encoding="utf-8") as sink:
                size = write_export(opened, run_id, sink.write)
            os.replace(temp, output)
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
        finally:
            temp.unlink(missing_ok=True)
    finally:
        opened.close()
    typer.echo(f"exported run {run_id} to {output} ({_size(size)})", err=True)


@app.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="A file written by `loopengt export` (- for stdin)")],
    as_id: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option("--as", help="Import under this run id instead of the exported one"),
    ] = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Add an exported run to this store (file or PostgreSQL), with its events, checkpoints and spec."""
    from loopengt_core.portability import import_run, read_export
    from loopengt_core.store import describe_location, open_store
    from loopengt_server.wording import plural

    source = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
    doc = read_export(text, source=source)
    opened = open_store(store)
    try:
        done = import_run(opened, doc, as_id=as_id, source=source)
        where = describe_location(store)  # no password
    finally:
        opened.close()
    typer.echo(
        f"imported run {done.run_id} ({done.status}, {plural(done.events, 'event')}, "
        f"{plural(done.checkpoints, 'checkpoint')}) "
        f"into {where}"
    )


@app.command("eval")
def eval_command(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON")] = False,
    save_baseline: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option(
            "--save-baseline", help="Save this run's metrics as baseline NAME (or a path ending .json)"
        ),
    ] = None,
    baseline: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option("--baseline", help="Compare with baseline NAME; exit 1 when a metric regressed"),
    ] = None,
    tolerance: Annotated[
        list[str],
        typer.Option(
            "--tolerance",
            help="Allowed regression: 0.3 (every metric) or KIND=VALUE, KIND one of turns, attempts, gates, "
            "time, spend (repeatable)",
        ),
    ] = [],  # noqa: B006
    baselines: Annotated[
        Path, typer.Option("--baselines", help="Folder of the baseline files (commit it)")
    ] = Path("loopengt-baselines"),
    store: StoreOption = ".loopengt",
) -> None:
    """Metrics of a run from its trace: 0.1.0's, plus attempts, gate pass rates and waiting times.

    With --save-baseline / --baseline: regression baselines for CI (exit 1 when a metric regressed).
    """
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from loopengt_core.budget import spend_text
    from loopengt_core.metrics import run_metrics
    from loopengt_core.store import check_id, open_store

    if save_baseline is not None and baseline is not None:
        raise fail("give --save-baseline or --baseline, not both", 2)
    if tolerance and baseline is None:
        raise fail("--tolerance goes with --baseline NAME", 2)
    check_id(run_id)
    opened = open_store(store)
    try:
        metrics = run_metrics(opened.events(run_id), now=datetime.now(UTC))
    finally:
        opened.close()
    if save_baseline is not None or baseline is not None:
        _baseline(metrics, save_baseline, baseline, tolerance, baselines, as_json=as_json)
        return
    if as_json:
        typer.echo(metrics.model_dump_json(indent=2))
        return
    console = Console(highlight=False, width=max(100, Console().width))
    console.print(f"[bold]{metrics.run_id}[/] loop {metrics.loop}: [bold]{metrics.run_status}[/]")
    table = Table("metric", "value", box=None, pad_edge=False)
    for name in (
        "total_turns",
        "total_steps",
        "completed_steps",
        "failed_steps",
        "success_rate",
        "total_duration_seconds",
        "run_status",
        "approvals_requested",
        "approval_wait_seconds",
        "first_accepted_output_seconds",
    ):
        value = getattr(metrics, name)
        table.add_row(name, "-" if value is None else str(value))
    table.add_row("spend", spend_text(metrics.spend, metrics.spend.submissions))
    console.print(table)
    steps = Table("step", "status", "attempts", "tokens", "cost_usd", box=None, pad_edge=False)
    for step in metrics.attempts:
        used = step.spend
        steps.add_row(
            step.step,
            step.status,
            str(step.attempts),
            f"{used.tokens:,}" if used.reported or used.tokens else "-",
            f"{used.cost_usd:g}" if used.costed else "-",
        )
    console.print(steps)
    if metrics.gates:
        judged = any(g.scores for g in metrics.gates)
        columns = ("gate", "passed", "failed", "pass rate", *(("judge scores",) if judged else ()))
        gates = Table(*columns, box=None, pad_edge=False)
        for gate in metrics.gates:
            rate = "-" if gate.pass_rate is None else f"{gate.pass_rate:.0%}"
            scores = (", ".join(f"{s:g}" for s in gate.scores) or "-",) if judged else ()
            gates.add_row(gate.gate, str(gate.passed), str(gate.failed), rate, *scores)
        console.print(gates)


def _baseline(
    metrics: RunMetrics,
    save: str | None,
    compare_with: str | None,
    given: list[str],
    folder: Path,
    *,
    as_json: bool,
) -> None:
    """`eval --save-baseline` / `eval --baseline`: exit 0 (saved; nothing regressed), 1 (a metric regressed)
    or 2 (nothing to compare: no such baseline, a run still going, another loop)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from loopengt_core import baseline as baselines

    if metrics.run_status in ("running", "waiting_approval", "paused"):
        raise fail(f"run {metrics.run_id} is {metrics.run_status}: baselines compare runs that ended", 2)
    try:
        if save is not None:
            path = baselines.path_of(save, folder)
            saved = baselines.Baseline(
                name=path.stem,
                run_id=metrics.run_id,
                loop=metrics.loop,
                metrics=baselines.BaselineMetrics.of(metrics),
            )
            baselines.save(saved, path)
            typer.echo(f"saved baseline {path.stem} of run {metrics.run_id} to {path}")
            return
        assert compare_with is not None
        tolerance = baselines.tolerances(given)
        path = baselines.path_of(compare_with, folder)
        kept = baselines.load(path)
    except LoopengtError as exc:
        raise fail(exc.message, 2) from None
    if kept.loop != metrics.loop:
        raise fail(
            f"baseline {path} is of loop {kept.loop!r}, run {metrics.run_id} of loop {metrics.loop!r}", 2
        )
    rows = baselines.compare(kept.metrics, baselines.BaselineMetrics.of(metrics), tolerance)
    worse = baselines.regressed(rows)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_id": metrics.run_id,
                    "baseline": str(path),
                    "baseline_run_id": kept.run_id,
                    "regressed": bool(worse),
                    "tolerance": tolerance,
                    "rows": [r.__dict__ for r in rows],
                },
                indent=2,
            )
        )
    else:
        console = Console(highlight=False, width=max(100, Console().width))
        table = Table("metric", "baseline", "now", "limit", "verdict", box=None, pad_edge=False)
        colour = {"regressed": "bold red", "improved": "green"}
        for row in rows:
            verdict = f"[{colour[row.verdict]}]{row.verdict}[/]" if row.verdict in colour else row.verdict
            table.add_row(escape(row.metric), row.baseline, row.current, row.limit, verdict)
        console.print(f"run [bold]{metrics.run_id}[/] against baseline {path} (run {kept.run_id})")
        console.print(table)
        console.print(
            f"[bold red]{len(worse)} regressed[/]: " + escape(", ".join(r.metric for r in worse))
            if worse
            else "no regression"
        )
    if worse:
        raise typer.Exit(1)


@app.command()
def doctor(
    store: StoreOption = ".loopengt",
    spec: Annotated[
        Optional[Path],  # noqa: UP045 - typer
        typer.Option(
            "--spec", help="Check the programs this spec's gates and steps run (default ./loop.yaml)"
        ),
    ] = None,
    agent: Annotated[str, typer.Option("--agent", help="Check that this agent command can be found")] = "",
) -> None:
    """Check Python, the MCP SDK, the store, editor configs, PostgreSQL, the programs a run starts; exit 1 if any fails."""
    from loopengt_server.doctor import check_programs, run_checks
    from loopengt_server.wording import plural

    if spec is None and Path("loop.yaml").is_file():
        spec = Path("loop.yaml")
    checks = run_checks(store) + check_programs(spec, agent)
    for item in checks:
        typer.echo(item.line())
    failed = sum(c.level == "FAIL" for c in checks)
    warned = sum(c.level == "WARN" for c in checks)
    typer.echo(f"{failed} failed, {plural(warned, 'warning')}, {len(checks) - failed - warned} ok")
    raise typer.Exit(1 if failed else 0)


hook_app = typer.Typer(
    help="Editor hooks that keep an agent on a run: `hook stop` and `hook session` (init --stop-hook).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(hook_app, name="hook")

HookStoreOption = Annotated[
    Optional[str],  # noqa: UP045 - typer
    typer.Option("--store", help="Store (default: the nearest .loopengt/ from the payload's folder)"),
]
HookClientOption = Annotated[
    Optional[str],  # noqa: UP045 - typer
    typer.Option("--client", help="The client sending the payload (default: told by its shape)"),
]


@hook_app.command("stop")
def hook_stop(
    store: HookStoreOption = None,
    client: HookClientOption = None,
    max_loops: Annotated[
        int, typer.Option("--max-loops", help="At most this many blocks / follow-ups in a row")
    ] = 5,
) -> None:
    """Stop hook: payload JSON on stdin; keeps the agent going while a run has open tasks, and records the
    usage in the session's transcript (Claude Code, Codex) on the run."""
    from loopengt_server.hooks import run_hook

    raise typer.Exit(
        run_hook(
            "stop", sys.stdin.buffer, sys.stdout, sys.stderr, client=client, store=store, max_loops=max_loops
        )
    )


@hook_app.command("session")
def hook_session(store: HookStoreOption = None, client: HookClientOption = None) -> None:
    """SessionStart hook: payload JSON on stdin; puts the live run back into the agent's context, and records
    the usage in the session's transcript (Claude Code, Codex) on the run."""
    from loopengt_server.hooks import run_hook

    raise typer.Exit(
        run_hook("session", sys.stdin.buffer, sys.stdout, sys.stderr, client=client, store=store)
    )


TransportOption = Annotated[
    str, typer.Option("--transport", help="stdio (default), streamable-http (at /mcp) or sse (at /sse)")
]


RootOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer
    typer.Option(
        "--root", help="The project served (default: the working directory); clients' paths stay inside it"
    ),
]


def _serve(
    transport: str, host: str, port: int, store: str, allow_inline_commands: bool, root: Path | None = None
) -> None:
    from loopengt_server.app import serve as run_server

    if transport not in ("stdio", "streamable-http", "sse", "http"):
        raise fail(f"unknown transport {transport!r}; use stdio, streamable-http or sse", 2)
    if root is not None:
        if not root.is_dir():
            raise fail(f"--root {root}: not a directory", 2)
        root = root.resolve()
        if "://" not in store and not Path(store).is_absolute():
            store = str(root / store)  # the project's store, as if the server were started there
    run_server(
        transport="streamable-http" if transport == "http" else transport,  # type: ignore[arg-type]
        host=host,
        port=port,
        store=store,
        allow_inline_commands=allow_inline_commands,
        root=root,
    )


@app.command()
def serve(
    transport: TransportOption = "stdio",
    host: Annotated[str, typer.Option("--host", help="HTTP bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port")] = 8765,
    store: StoreOption = ".loopengt",
    allow_inline_commands: Annotated[
        bool,
        typer.Option(
            "--allow-inline-commands", help="Let inline specs (start_run spec=...) contain commands"
        ),
    ] = False,
    root: RootOption = None,
) -> None:
    """Run the MCP server (stdio by default; HTTP transports bind 127.0.0.1)."""
    _serve(transport, host, port, store, allow_inline_commands, root)


@app.command("mcp")
def mcp_alias(
    transport: TransportOption = "stdio",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8765,
    store: StoreOption = ".loopengt",
    allow_inline_commands: Annotated[bool, typer.Option("--allow-inline-commands")] = False,
    root: RootOption = None,
) -> None:
    """Alias of serve (loopengt 0.1.0 client configs use `loopengt mcp --transport stdio`)."""
    _serve(transport, host, port, store, allow_inline_commands, root)


@app.command()
def ui(
    host: Annotated[str, typer.Option("--host", help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (default: a free one, printed)")] = 0,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser")] = False,
    store: StoreOption = ".loopengt",
) -> None:
    """A live web view of the runs in the store (127.0.0.1; LOOPENGT_TOKEN guards it as it does /mcp)."""
    from loopengt_server.ui.serve import serve_ui

    serve_ui(store=store, host=host, port=port, open_browser=open_browser)


@app.command()
def graph(
    spec: Annotated[str, typer.Argument(help="A loop.yaml, or the name of a built-in template")],
) -> None:
    """Print the loop as a Mermaid flowchart (the graph the web view draws), for READMEs and pull requests."""
    from loopengt_core.catalog import template_names, template_text
    from loopengt_core.validation import load_spec
    from loopengt_server.ui.graph import mermaid

    if not Path(spec).exists() and spec in template_names():
        parsed = load_spec(template_text(spec), source=spec)
    else:
        _check_spec(spec)
        from loopengt_core.validation import load_spec_file

        parsed = load_spec_file(spec)[0]
    sys.stdout.write(mermaid(parsed))


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    output: OutputOption = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Write a Markdown report of a run: steps, attempts, gate results, spend, timeline."""
    from loopengt_server.ui.report import markdown_report

    text = markdown_report(_runs(store), run_id)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"wrote the report of run {run_id} to {output}", err=True)


def _usage_line(exc: typer.TyperException) -> str:
    """click's usage error as the one line the README promises, with where to read the usage."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "loopengt"
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:] if message[1:2].islower() else message
    return f"loopengt: {message} (try '{command} --help')"


def main() -> None:
    """Console entry point: LoopengtError -> one line; anything else -> one line plus a debug hint.

    click's own errors (unknown option, missing argument, bad value) are one line too: typer runs in
    non-standalone mode, so they come here instead of being drawn as boxes with the usage above them.
    """
    from loopengt_core.logs import configure
    from loopengt_server.wording import for_person

    configure()
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's ClickException and its UsageError family
        if type(exc).__name__ == "NoArgsIsHelpError":  # `loopengt` alone: the help, as before
            typer.echo(exc.format_message(), err=True)
            sys.exit(2)
        if getattr(exc, "exit_code", 1) == 2:
            typer.echo(_usage_line(exc), err=True)
            sys.exit(2)
        typer.echo(f"loopengt: {exc.format_message()}", err=True)
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.Abort:
        typer.echo("loopengt: aborted", err=True)
        sys.exit(1)
    except LoopengtError as exc:
        typer.echo(f"loopengt: {for_person(exc.message)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("loopengt: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("LOOPENGT_DEBUG"):
            raise
        typer.echo(
            f"loopengt: internal error: {type(exc).__name__}: {exc} (set LOOPENGT_DEBUG=1 for details)",
            err=True,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
