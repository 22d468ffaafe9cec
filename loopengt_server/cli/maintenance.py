"""Commands that keep a store tidy and move runs between stores: prune, export, import."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loopengt_server.cli.options import OutputOption, StoreOption, fail, runs_for

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs


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

    from loopengt_core.service.retention import check_statuses, parse_age
    from loopengt_core.service.retention import prune as prune_runs
    from loopengt_core.store import open_store
    from loopengt_server.present.wording import plural

    if older_than is None and not worktrees:
        raise _MissingOption(
            "give it to delete ended runs, or give --worktrees to remove their worktrees",
            param_hint="'--older-than'",
        )
    chosen = check_statuses(statuses)
    if older_than is None:
        runs = runs_for(store)
        ended = [r.run_id for r in runs.list_runs(limit=1_000_000) if r.status in chosen]
        _prune_worktrees(runs, ended, dry_run)
        return
    age = parse_age(older_than)
    opened = open_store(store)
    try:
        if not dry_run:  # the worktrees of the runs about to go, first: a run's record names them
            going = prune_runs(opened, older_than=age, now=datetime.now(UTC), statuses=chosen, dry_run=True)
            if going.runs:
                _prune_worktrees(runs_for(store), [r.run_id for r in going.runs], dry_run, quiet=True)
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
    from loopengt_server.present.wording import plural

    if dry_run:
        typer.echo(f"dry run: would remove the worktrees of {plural(len(run_ids), 'ended run')}")
        return
    removed = [what for run_id in run_ids for what in runs.prune_worktrees(run_id)]
    for what in removed:
        typer.echo(f"removed {what}")
    if not quiet:
        typer.echo(f"removed {plural(len(removed), 'worktree or branch', 'worktrees and branches')}")


def export_command(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    output: OutputOption = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Write a run (spec, events, checkpoints) as one JSON file that `loopengt import` reads."""
    from loopengt_core.service.portability import write_export
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


def import_command(
    file: Annotated[str, typer.Argument(help="A file written by `loopengt export` (- for stdin)")],
    as_id: Annotated[
        Optional[str],  # noqa: UP045 - typer
        typer.Option("--as", help="Import under this run id instead of the exported one"),
    ] = None,
    store: StoreOption = ".loopengt",
) -> None:
    """Add an exported run to this store (file or PostgreSQL), with its events, checkpoints and spec."""
    from loopengt_core.service.portability import import_run, read_export
    from loopengt_core.store import describe_location, open_store
    from loopengt_server.present.wording import plural

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
