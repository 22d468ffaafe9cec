"""Commands that steer a run from the terminal: approve, cancel, checkpoint, resume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loopengt_server.cli.options import StoreOption, runs_for

if TYPE_CHECKING:
    pass


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

    from loopengt_server.present.wording import for_person

    view = runs_for(store).approve(
        run_id, approved=not reject, comment=comment, by=getpass.getuser(), via="cli"
    )
    typer.echo(
        f"{'rejected' if reject else 'approved'}; run {run_id} is now {view.status}: "
        f"{for_person(view.next_action)}"
    )


def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    reason: Annotated[str, typer.Option("--reason")] = "cancelled from the terminal",
    store: StoreOption = ".loopengt",
) -> None:
    """Cancel a run."""
    view = runs_for(store).cancel_run(run_id, reason)
    typer.echo(f"run {run_id} {view.status}")


def checkpoint(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    label: Annotated[Optional[str], typer.Option("--label")] = None,  # noqa: UP045
    store: StoreOption = ".loopengt",
) -> None:
    """Take a checkpoint of a run (fork from it later with `resume --checkpoint`)."""
    info = runs_for(store).checkpoint(run_id, label)
    kept = f"; files kept as commit {info.commit[:12]}" if info.commit else ""
    typer.echo(f"checkpoint {info.checkpoint_id} at seq {info.seq}{kept}")


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
    from loopengt_server.present.wording import for_person

    raised = {
        key: value
        for key, value in (
            ("max_tokens", budget_tokens),
            ("max_cost_usd", budget_usd),
            ("max_wall_seconds", budget_seconds),
        )
        if value is not None
    }
    view = runs_for(store).resume(
        run_id,
        checkpoint_id,
        accept_drift=accept_drift,
        worktree=worktree,
        budget=raised or None,
        hint=hint,
    )
    where = f" in {view.workspace.root}" if worktree and view.workspace else ""
    typer.echo(f"run {view.run_id}{where} {view.status}: {for_person(view.next_action)}")
