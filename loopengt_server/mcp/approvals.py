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

from loopengt_core.engine.view import RunView
from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs

log = logging.getLogger("loopengt.approvals")


class ApprovalAnswer(BaseModel):
    """What a person answers when the server asks for an approval through the client (elicitation)."""

    approve: bool = Field(description="Approve this step's output?")
    comment: str = Field("", description="Why (on rejection it becomes the agent's feedback)")


async def ask_for_approval(ctx: Context, runs: Runs, run_id: str) -> RunView | None:
    """Ask the user to approve the gate the run waits at. None when nobody could be asked or answered."""
    request = await anyio.to_thread.run_sync(runs.approval_request, run_id)
    if request is None or "elicitation" not in request["via"]:
        return None  # nothing waits, or the spec wants the answer from outside the agent's client
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
    client = client_name(ctx)
    try:
        return await anyio.to_thread.run_sync(
            functools.partial(
                runs.approve,
                run_id,
                approved=data.approve,
                comment=data.comment or None,
                by=f"{getpass.getuser()} (through {client or 'an MCP client'})",
                via="elicitation",
                client=client,
                task_id=request["task_id"],  # the approval the person was asked about, no other
            )
        )
    except LoopengtError as exc:  # answered meanwhile from the terminal
        log.info("approval for %s not applied: %s", run_id, exc)
        return None


def client_name(ctx: Context) -> str | None:
    """The connected client's `clientInfo` as `name version` (what the trace records an elicited answer
    came through); None when the connection did not say."""
    params = getattr(ctx.session, "client_params", None)
    info = getattr(params, "client_info", None)
    if info is None:
        return None
    return " ".join(str(x) for x in (info.name, info.version) if x)[:200] or None


def _preview(output: object) -> str:
    text = str(output)
    return text if len(text) <= 500 else text[:497] + "..."
