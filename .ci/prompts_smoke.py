"""CI: the installed `loopengt serve` (stdio) lists the three prompts and renders one, through the real
MCP client. Run by .ci/wheel_smoke.sh with the wheel's venv first on PATH."""

from __future__ import annotations

import shutil
import sys

import anyio
from mcp import Client, StdioServerParameters

EXPECTED = {"design_loop", "drive_run", "review_loop"}


async def check(mode: str) -> None:
    server = StdioServerParameters(command=shutil.which("loopengt") or "loopengt", args=["serve"])
    async with Client(server, mode=mode, read_timeout_seconds=60) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        if names != EXPECTED:
            sys.exit(f"prompts/list ({mode}): expected {sorted(EXPECTED)}, got {sorted(names)}")
        got = await client.get_prompt("design_loop", {"goal": "make the tests pass"})
        text = " ".join(getattr(m.content, "text", "") for m in got.messages)
        if "make the tests pass" not in text:
            sys.exit(f"prompts/get design_loop ({mode}) did not render the goal: {text[:200]!r}")
    print(f"prompts/list ({mode}): {', '.join(sorted(names))}; prompts/get design_loop rendered")


async def main() -> None:
    for mode in ("legacy", "auto"):
        await check(mode)


anyio.run(main)
