"""Budgets and stuck pauses through the real `mcp` client over stdio and the `loopengt` console script
(issue 16): step(usage=...) pauses an enforced budget, `loopengt resume --budget-tokens` raises it, and
resume(hint=...) over MCP continues a stuck run with the hint as feedback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import ok, run_cli, stdio_client, step

pytestmark = pytest.mark.anyio

USAGE = {"input_tokens": 2000, "output_tokens": 1000, "model": "m"}
BUDGETED: dict[str, Any] = {
    "name": "budgeted",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": f"s{n}", "agent": "a"} for n in range(1, 7)],
    "policy": {"budget": {"mode": "enforce", "max_tokens": 10_000}},
}
STUCK: dict[str, Any] = {
    "name": "stuck",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": "fix", "agent": "a", "verification_gates": ["check"]}],
    "policy": {
        "retry": {"max_retries": 5, "initial_delay_seconds": 0},
        "verification_gates": [
            {"name": "check", "command": [sys.executable, "-c", "import sys; print('nope'); sys.exit(1)"]}
        ],
        "stuck": {},
    },
}


async def test_an_enforced_budget_over_stdio_pauses_and_the_cli_raises_it(era: str, tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(BUDGETED), encoding="utf-8")
    (tmp_path / "stuck.yaml").write_text(yaml.safe_dump(STUCK), encoding="utf-8")
    async with stdio_client(tmp_path / "store", tmp_path, era) as client:
        run = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))
        run_id = run["run_id"]
        for n in range(1, 5):
            answer = ok(await step(client, run_id, f"s{n}#1", {"n": n}, usage=USAGE))
        assert answer["status"] == "paused"
        assert answer["paused_for"] == "budget"
        assert answer["tasks"] == []
        assert answer["spend"]["tokens"] == 12_000
        assert "--budget-tokens" in answer["next_action"]

        bad = await step(client, run_id, "s5#1", {}, usage={"tokens": 1})
        assert bad.is_error

        done = run_cli("resume", run_id, "--budget-tokens", "20000", "--store", "store", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"run {run_id} running" in done.stdout
        view = ok(await client.call_tool("get_run", {"run_id": run_id}))
        assert [t["task_id"] for t in view["tasks"]] == ["s5#1"]

        stuck = ok(await client.call_tool("start_run", {"spec_path": "stuck.yaml"}))["run_id"]
        for n in range(1, 4):
            answer = ok(await step(client, stuck, f"fix#{n}", {"n": n}))
        assert answer["paused_for"] == "stuck"
        resumed = ok(await client.call_tool("resume", {"run_id": stuck, "hint": "print yes instead"}))
        assert resumed["status"] == "running"
        assert resumed["tasks"][0]["feedback"].startswith("A person's hint: print yes instead")
