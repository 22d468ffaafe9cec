"""A bare MCP server: the SDK's own stdio round trip, the floor for mcp_roundtrip.py.

`noop` does nothing; `append_fsync` does what a durable step must at least do on top of the round trip:
append the same ~300-byte line as FsyncFloor to a file (argv[1]) and fsync it, inline on the event loop.
"""

import os
import sys

from _common import LINE
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("noop", log_level="WARNING")
_fd: list[int] = []


@mcp.tool()
async def noop() -> str:
    """Do nothing."""
    return "ok"


@mcp.tool()
async def append_fsync() -> str:
    """Append one line and fsync it."""
    if not _fd:
        _fd.append(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644))
    os.write(_fd[0], LINE)
    os.fsync(_fd[0])
    return "ok"


if __name__ == "__main__":
    mcp.run("stdio")
