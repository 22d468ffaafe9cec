"""Commands that read runs and the store without changing a run: runs, show, diff, check, graph, report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loopengt_server.cli.options import OutputOption, StoreOption, check_spec, fail, runs_for

if TYPE_CHECKING:
    pass


def list_runs_command(
    status: Annotated[Optional[str], typer.Option("--status", help="Only runs with this status")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", help="At most this many")] = 50,
    store: StoreOption = ".loopengt",
) -> None:
    """List runs, newest first."""
    from rich.console import Console
    from rich.table import Table

    table = Table("run_id", "loop", "status", "turn", "started", "parent", box=None, pad_edge=False)
    for s in runs_for(store).list_runs(status=status, limit=limit):
        loop = s.loop if s.error is None else s.error  # a corrupt or unreadable run says why
        table.add_row(s.run_id, loop, s.status, str(s.turn), s.started_at, s.parent_run_id or "")
    Console(width=160).print(table)


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

    from loopengt_core.model.budget import Usage, spend_text, usage_text
    from loopengt_core.model.events import GateFailed, GatePassed, event_data, to_record
    from loopengt_server.present.wording import for_person, plural

    if follow:
        _follow(run_id, store, as_json)
    runs = runs_for(store)
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


def _follow(run_id: str, store: str, as_json: bool) -> None:
    from loopengt_core.service.reading import RunReader
    from loopengt_core.store import check_id, open_store
    from loopengt_server.present.follow import follow as watch

    if as_json:
        raise fail("--follow draws a live view; use --json without --follow, or --trace for the events", 2)
    check_id(run_id)
    reader = RunReader(open_store(store))
    try:
        final = watch(reader, run_id)
    finally:
        reader.close()
    raise typer.Exit(0 if final.status == "completed" else 1)


def diff(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    checkpoint_id: Annotated[
        str | None, typer.Option("--from", help="From this checkpoint (default: the run's start)")
    ] = None,
    stat: Annotated[bool, typer.Option("--stat", help="Only a diffstat")] = False,
    store: StoreOption = ".loopengt",
) -> None:
    """git diff of a run's files: from its start (or a checkpoint) to the work tree as it is now."""
    sys.stdout.write(runs_for(store).diff(run_id, checkpoint_id, stat=stat))


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
    from loopengt_core.service.check import check_store, repair_run
    from loopengt_core.store import open_store
    from loopengt_server.present.wording import plural

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


def graph(
    spec: Annotated[str, typer.Argument(help="A loop.yaml, or the name of a built-in template")],
) -> None:
    """Print the loop as a Mermaid flowchart (the graph the web view draws), for READMEs and pull requests."""
    from loopengt_core.engine.validation import load_spec
    from loopengt_core.service.catalog import template_names, template_text
    from loopengt_server.ui.graph import mermaid

    if not Path(spec).exists() and spec in template_names():
        parsed = load_spec(template_text(spec), source=spec)
    else:
        check_spec(spec)
        from loopengt_core.service.specfiles import load_spec_file

        parsed = load_spec_file(spec)[0]
    sys.stdout.write(mermaid(parsed))


def report(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    output: OutputOption = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Write a Markdown report of a run: steps, attempts, gate results, spend, timeline."""
    from loopengt_server.ui.report import markdown_report

    text = markdown_report(runs_for(store), run_id)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"wrote the report of run {run_id} to {output}", err=True)
