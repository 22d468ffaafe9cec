"""loopengt's edges over the core service (`loopengt_core.service.runs.Runs`): the MCP server (`app`, `tools`,
`resources`, `prompts`, `notify`, `tasks_extension`, transports in `stdio` and `http_limits`), the
`loopengt` CLI (`cli`, `headless`, `follow`, `doctor`), the editor hooks and client configs (`hooks`,
`clients`) and the web view (`ui`). Private SDK names are reached only in `sdk`.
"""
