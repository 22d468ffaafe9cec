"""The `loopengt` command. Every error is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from loopengt_core.errors import LoopengtError

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


def fail(message: str, code: int = 1) -> typer.Exit:
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
            typer.echo(f"{spec}: {problem}" if problem.location != str(spec) else f"{spec}: {problem.message}")
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
    template: Annotated[str, typer.Option("--template", "-t", help="Template name (see `loopengt templates`)")] = (
        "fix_tests"
    ),
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the loop spec")] = Path("loop.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file")] = False,
) -> None:
    """Write a loop.yaml from a template."""
    from loopengt_core.catalog import template_text

    text = template_text(template)
    if output.exists() and not force:
        raise fail(f"{output} exists; pass --force to overwrite it")
    header = "# yaml-language-server: $schema=https://loopengt.dev/schema/loop-spec.json\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text if text.startswith("# yaml-language-server") else header + text, encoding="utf-8")
    typer.echo(f"wrote {output} (template {template}); check it with: loopengt validate {output}")


def main() -> None:
    """Console entry point: LoopengtError -> one line; anything else -> one line plus a debug hint."""
    try:
        app()
    except LoopengtError as exc:
        typer.echo(f"loopengt: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("loopengt: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the top-level edge: no traceback reaches the terminal
        if os.environ.get("LOOPENGT_DEBUG"):
            raise
        typer.echo(f"loopengt: internal error: {type(exc).__name__}: {exc} (set LOOPENGT_DEBUG=1 for details)",
                   err=True)
        sys.exit(1)

if __name__ == "__main__":
    main()
