"""Commands that drive a run headless with agent commands: `run` and `design`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from loopengt_core.model.errors import LoopengtError
from loopengt_server.cli.options import QuietOption, StoreOption, check_spec, fail, runs_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from loopengt_core.engine.view import RunView
    from loopengt_core.service.runs import Runs
    from loopengt_server.headless import Agents


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
            agents.check(check_spec(spec))
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

    from loopengt_core.service.reading import RunReader
    from loopengt_core.store import open_store
    from loopengt_server.headless import AgentCannotStart, Progress, Watcher, drive, show_end

    console = Console(highlight=False, soft_wrap=True)
    progress = Progress(console, quiet=quiet)
    runs = runs_for(store, allow_inline_commands=False, on_command=progress.command_started)
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
    from loopengt_server.cli.design import DESIGN_TEMPLATE, design_output

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
