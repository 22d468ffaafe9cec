"""The MCP layer: the server app, its tools, resources and prompts, the transports and the Tasks
extension. Thin: each handler parses, calls one `loopengt_core.service` method and shapes the answer."""
