"""An elicited answer applies only to the approval the person was asked about, never to the next gate
that came to wait while the form was open (two servers on one store, and the real CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext
from mcp_helpers import LOOPENGT, ok, server_env, stdio_client, step, trace_events

pytestmark = pytest.mark.anyio

SPEC: dict[str, Any] = {
    "name": "two-approvals",
    "pattern": "sequential",
    "agents": [{"name": "coder"}],
    "steps": [
        {"name": "implement", "agent": "coder", "verification_gates": ["sign_off"]},
        {
            "name": "announce",
            "agent": "coder",
            "verification_gates": ["sign_off"],
            "dependencies": [{"step_name": "implement"}],
        },
    ],
    "policy": {
        "max_turns": 10,
        "verification_gates": [{"name": "sign_off", "approval": True, "prompt": "Ship it?"}],
    },
}


async def test_a_late_elicited_answer_does_not_approve_the_next_gate(era: str, tmp_path: Path) -> None:
    if era == "auto":
        pytest.skip("2026-07-28 connections cannot elicit")
    store = tmp_path / "store"
    async with stdio_client(store, tmp_path, era) as other:
        asked: list[str] = []
        run: dict[str, str] = {}

        async def person_slow_to_answer(
            ctx: ClientRequestContext, params: types.ElicitRequestParams
        ) -> types.ElicitResult:
            asked.append(params.message)
            if len(asked) == 1:
                # While the dialog about 'implement' is open, the person approves it in a terminal, and the
                # agent (another client on the same store) goes on to 'announce', which waits for approval.
                done = await anyio.run_process(
                    [str(LOOPENGT), "approve", run["id"], "--store", str(store)],
                    cwd=tmp_path,
                    env=server_env(),
                    check=False,
                )
                assert done.returncode == 0, done.stderr
                waiting = ok(await step(other, run["id"], "announce#1", {"text": "announce"}))
                assert waiting["status"] == "waiting_approval", waiting
                # ... then clicks "approve" in the forgotten dialog about 'implement'
                return types.ElicitResult(
                    action="accept", content={"approve": True, "comment": "implement ok"}
                )
            return types.ElicitResult(action="decline")

        async with stdio_client(store, tmp_path, era, elicitation_callback=person_slow_to_answer) as client:
            view = ok(await client.call_tool("start_run", {"spec": SPEC}))
            run["id"] = view["run_id"]
            await step(client, run["id"], "implement#1", {"text": "the change"})
            assert "implement" in asked[0]
            after = ok(await other.call_tool("get_run", {"run_id": run["id"]}))
            given = [e for e in await trace_events(other, run["id"]) if e["type"] == "approval_given"]
            assert [(e["data"]["step"], e["data"]["via"]) for e in given] == [("implement", "cli")], given
            assert after["status"] == "waiting_approval", after
