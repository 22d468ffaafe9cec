"""Commands that serve: the MCP server (`serve`, its alias `mcp`) and the web view (`ui`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loopengt_server.cli.options import StoreOption, fail

if TYPE_CHECKING:
    pass


TransportOption = Annotated[
    str, typer.Option("--transport", help="stdio (default), streamable-http (at /mcp) or sse (at /sse)")
]


RootOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer
    typer.Option(
        "--root", help="The project served (default: the working directory); clients' paths stay inside it"
    ),
]


def _serve(
    transport: str, host: str, port: int, store: str, allow_inline_commands: bool, root: Path | None = None
) -> None:
    from loopengt_server.mcp.app import serve as run_server

    if transport not in ("stdio", "streamable-http", "sse", "http"):
        raise fail(f"unknown transport {transport!r}; use stdio, streamable-http or sse", 2)
    if root is not None:
        if not root.is_dir():
            raise fail(f"--root {root}: not a directory", 2)
        root = root.resolve()
        if "://" not in store and not Path(store).is_absolute():
            store = str(root / store)  # the project's store, as if the server were started there
    run_server(
        transport="streamable-http" if transport == "http" else transport,  # type: ignore[arg-type]
        host=host,
        port=port,
        store=store,
        allow_inline_commands=allow_inline_commands,
        root=root,
    )


def serve(
    transport: TransportOption = "stdio",
    host: Annotated[str, typer.Option("--host", help="HTTP bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port")] = 8765,
    store: StoreOption = ".loopengt",
    allow_inline_commands: Annotated[
        bool,
        typer.Option(
            "--allow-inline-commands", help="Let inline specs (start_run spec=...) contain commands"
        ),
    ] = False,
    root: RootOption = None,
) -> None:
    """Run the MCP server (stdio by default; HTTP transports bind 127.0.0.1)."""
    _serve(transport, host, port, store, allow_inline_commands, root)


def mcp_alias(
    transport: TransportOption = "stdio",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8765,
    store: StoreOption = ".loopengt",
    allow_inline_commands: Annotated[bool, typer.Option("--allow-inline-commands")] = False,
    root: RootOption = None,
) -> None:
    """Alias of serve (loopengt 0.1.0 client configs use `loopengt mcp --transport stdio`)."""
    _serve(transport, host, port, store, allow_inline_commands, root)


def ui(
    host: Annotated[str, typer.Option("--host", help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (default: a free one, printed)")] = 0,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser")] = False,
    store: StoreOption = ".loopengt",
) -> None:
    """A live web view of the runs in the store (127.0.0.1; LOOPENGT_TOKEN guards it as it does /mcp)."""
    from loopengt_server.ui.serve import serve_ui

    serve_ui(store=store, host=host, port=port, open_browser=open_browser)
