"""Commands that set a project up: check and write loop specs, configure editors, diagnose the install."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loopengt_core.model.errors import LoopengtError
from loopengt_server.cli.options import StoreOption, fail

if TYPE_CHECKING:
    pass


def validate(spec: Annotated[Path, typer.Argument(help="Path to a loop.yaml")]) -> None:
    """Check a loop spec; print every problem with its location."""
    from loopengt_core.engine.validation import SpecError, Validation, validation_of
    from loopengt_core.service.specfiles import read_spec_file

    try:
        checked = validation_of(read_spec_file(spec))
    except SpecError as exc:  # the file cannot be read
        checked = Validation(valid=False, problems=exc.problems, parsed=False)
    if not checked.parsed:
        for problem in checked.problems:
            typer.echo(
                f"{spec}: {problem}" if problem.location != str(spec) else f"{spec}: {problem.message}"
            )
        raise typer.Exit(1)
    if not checked.valid:
        for problem in checked.problems:
            typer.echo(str(problem))
        count = len(checked.problems)
        typer.echo(f"{spec}: {count} problem{'s' if count != 1 else ''}", err=True)
        raise typer.Exit(1)
    typer.echo(checked.summary)


def schema() -> None:
    """Print the JSON Schema of loop.yaml (for editors and agents)."""
    from loopengt_core.model.spec import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def templates() -> None:
    """List the built-in loop templates."""
    from rich.console import Console
    from rich.table import Table

    from loopengt_core.service.catalog import list_templates

    table = Table("name", "pattern", "description", box=None, pad_edge=False)
    for info in list_templates():
        table.add_row(info.name, info.pattern, info.description)
    Console(width=max(100, Console().width)).print(table)


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

    from loopengt_core.model.spec import json_schema
    from loopengt_core.service.catalog import template_text
    from loopengt_core.service.testcommand import GIVEN, Detected, detect_test_command, with_test_command

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
    from loopengt_server.present.wording import plural

    if spec is None and Path("loop.yaml").is_file():
        spec = Path("loop.yaml")
    checks = run_checks(store) + check_programs(spec, agent)
    for item in checks:
        typer.echo(item.line())
    failed = sum(c.level == "FAIL" for c in checks)
    warned = sum(c.level == "WARN" for c in checks)
    typer.echo(f"{failed} failed, {plural(warned, 'warning')}, {len(checks) - failed - warned} ok")
    raise typer.Exit(1 if failed else 0)
