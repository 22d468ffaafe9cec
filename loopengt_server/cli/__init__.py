"""The `loopengt` command: the typer app, every command in the order `--help` lists them, and `main`.

Every error is one line on stderr and a non-zero exit, never a traceback. The commands live in modules by
concern (setup, running, steering, inspecting, maintenance, evaluating, serving, hook); each imports what
it needs inside the command, so that starting the CLI stays lean.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from loopengt_core.model.errors import LoopengtError
from loopengt_server.cli import (
    evaluating,
    hook,
    inspecting,
    maintenance,
    running,
    serving,
    setup,
    steering,
)

app = typer.Typer(
    name="loopengt",
    help="Durable loop orchestration for coding agents (MCP server and CLI).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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


# Registered here, in one list, so that `loopengt --help` lists the commands in this order.
app.command()(setup.validate)
app.command()(setup.schema)
app.command()(setup.templates)
app.command()(setup.init)
app.command()(running.run)
app.command()(running.design)
app.command("runs")(inspecting.list_runs_command)
app.command()(inspecting.show)
app.command()(steering.approve)
app.command()(steering.cancel)
app.command()(steering.checkpoint)
app.command()(steering.resume)
app.command()(inspecting.diff)
app.command()(inspecting.check)
app.command()(maintenance.prune)
app.command("export")(maintenance.export_command)
app.command("import")(maintenance.import_command)
app.command("eval")(evaluating.eval_command)
app.command()(setup.doctor)
app.add_typer(hook.hook_app, name="hook")
app.command()(serving.serve)
app.command("mcp")(serving.mcp_alias)
app.command()(serving.ui)
app.command()(inspecting.graph)
app.command()(inspecting.report)


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
    from loopengt_core.service.logs import configure
    from loopengt_server.present.wording import for_person

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
