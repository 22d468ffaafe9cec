"""A bare MCP server with one no-op tool: the SDK's own stdio round trip, the floor for mcp_roundtrip.py."""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("noop", log_level="WARNING")


@mcp.tool()
async def noop() -> str:
    """Do nothing."""
    return "ok"


if __name__ == "__main__":
    mcp.run("stdio")
