"""Approval gates answered by a person through MCP elicitation, where the client can ask one.

The run already waits durably in `waiting_approval` before anyone is asked, so a client without
elicitation (or a 2026-07-28 connection, which has no back channel for it) loses nothing: the
person answers with `loopengt approve` instead.
"""

from __future__ import annotations

import functools
import getpass
import logging

import anyio
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

from loopengt_core.errors import LoopengtError
from loopengt_core.runs import Runs
from loopengt_core.view import RunView

log = logging.getLogger("loopengt.approvals")


class ApprovalAnswer(BaseModel):
    approve: bool = Field(description="Approve this step's output?")
    comment: str = Field("", description="Why (on rejection it becomes the agent's feedback)")


async def ask_for_approval(ctx: Context, runs: Runs, run_id: str) -> RunView | None:
    """Ask the user to approve the gate the run waits at. None when nobody could be asked or answered."""
    request = await anyio.to_thread.run_sync(runs.approval_request, run_id)
    if request is None:
        return None
    message = (
        f"loopengt run {run_id}: approve step '{request['step']}' (gate '{request['gate']}')?"
        + (f"\n{request['prompt']}" if request["prompt"] else "")
        + f"\nOutput: {_preview(request['output'])}"
    )
    try:
        answer = await ctx.elicit(message, ApprovalAnswer)
    except MCPError as exc:  # no back channel (2026-07-28) or the client cannot elicit
        log.info("elicitation unavailable for %s: %s", run_id, exc)
        return None
    if answer.action != "accept" or answer.data is None:
        return None  # declined or dismissed: the run keeps waiting for `loopengt approve`
    data = answer.data
    try:
        return await anyio.to_thread.run_sync(
            functools.partial(
                runs.approve,
                run_id,
                approved=data.approve,
                comment=data.comment or None,
                by=f"{getpass.getuser()} (editor)",
            )
        )
    except LoopengtError as exc:  # answered meanwhile from the terminal
        log.info("approval for %s not applied: %s", run_id, exc)
        return None


def _preview(output: object) -> str:
    text = str(output)
    return text if len(text) <= 500 else text[:497] + "..."
