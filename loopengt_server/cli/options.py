"""What the commands share: the --store, --quiet and --output options, the one-line failure, the runs service
and the spec check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from loopengt_core.model.spec import LoopSpec
    from loopengt_core.service.runs import Runs


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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `loopengt: <message>` on stderr; the Exit to raise with `code`."""
    typer.echo(f"loopengt: {message}", err=True)
    return typer.Exit(code)


def runs_for(store: str, **options: Any) -> Runs:
    """The runs service for a command: it waits for the commands it starts (a CLI process that answered
    early would end them with it)."""
    import math

    from loopengt_core.service.runs import Runs
    from loopengt_core.store import open_store

    return Runs(open_store(store), call_wait=math.inf, **options)


def check_spec(spec: str) -> LoopSpec:
    """The spec file is readable and valid, or one line naming the file, its first problems and the fix."""
    from loopengt_core.engine.validation import SpecError, load_spec
    from loopengt_core.service.specfiles import read_spec_file

    try:
        return load_spec(read_spec_file(spec), source=spec)
    except SpecError as exc:
        problems = "; ".join(p.message if p.location == spec else str(p) for p in exc.problems[:3]) + (
            f" (and {len(exc.problems) - 3} more)" if len(exc.problems) > 3 else ""
        )
        about_the_file = all(p.location == spec for p in exc.problems)  # missing, unreadable: no more to see
        hint = "" if about_the_file else f"; see every problem with: loopengt validate {spec}"
        raise fail(f"{spec}: {problems}{hint}") from None
