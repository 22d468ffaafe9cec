"""`loopengt hook`: the editor hooks that keep an agent on a run (`hook stop`, `hook session`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    pass


hook_app = typer.Typer(
    help="Editor hooks that keep an agent on a run: `hook stop` and `hook session` (init --stop-hook).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
