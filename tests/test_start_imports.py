"""What a fresh process loads before it can answer: `loopengt serve` (stdio) and the other CLI commands.

A server's first answer waits for every import it makes; the SDK alone takes most of a second, so what
the first answer does not need is imported where it is used (bench/server_start.py times it).
"""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_stdio_server_loads_no_http_server_or_schema_checker() -> None:
    loaded = _loaded("import loopengt_server.mcp.app")
    assert "loopengt_server.mcp.app" in loaded
    unwanted = {
        "jsonschema",
        "referencing",
        "loopengt_server.mcp.http_limits",
        "uvicorn.protocols.http.h11_impl",
    }
    assert not unwanted & loaded, f"imported before the first answer needs them: {sorted(unwanted & loaded)}"


def test_the_cli_loads_neither_the_server_nor_the_event_models() -> None:
    loaded = _loaded("import loopengt_server.cli")
    unwanted = {
        "mcp",
        "loopengt_server.mcp.app",
        "loopengt_core.model.events",
        "loopengt_core.service.runs",
        "jsonschema",
    }
    assert not unwanted & loaded, f"imported by every CLI command: {sorted(unwanted & loaded)}"
