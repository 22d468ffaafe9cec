"""`loopengt eval`: a run's metrics, and regression baselines for CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loopengt_core.model.errors import LoopengtError
from loopengt_server.cli.options import StoreOption, fail

if TYPE_CHECKING:
    from loopengt_core.service.metrics import RunMetrics


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

    from loopengt_core.model.budget import spend_text
    from loopengt_core.service.metrics import run_metrics
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

    from loopengt_core.service import baseline as baselines

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
