"""The SDK's private attributes are reached in one module, loopengt_server/sdk.py, which says why."""

from __future__ import annotations

import re
from pathlib import Path

PRIVATE = re.compile(r"\.(_lowlevel_server|_tool_manager|_resource_manager|_prompt_manager|_connection)\b")
PACKAGES = [Path(__file__).parents[1] / "loopengt_server", Path(__file__).parents[1] / "loopengt_core"]


def test_only_the_sdk_adapter_reaches_into_the_sdk() -> None:
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
        if path.name != "sdk.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if PRIVATE.search(line)
    ]
    assert found == []
