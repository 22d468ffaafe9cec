"""A person's answer to an approval gate, and what the person is asked: one lock cycle each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loopengt_core.engine import Engine
from loopengt_core.model.errors import Conflict
from loopengt_core.model.events import AnyEvent
from loopengt_core.model.limits import checked_text
from loopengt_core.model.spec import ApprovalChannel
from loopengt_core.model.state import RunState
from loopengt_core.service.kernel import TransitionKernel
from loopengt_core.service.loaded import LoadedRun, nothing


def answer(
    kernel: TransitionKernel,
    run_id: str,
    *,
    approved: bool,
    comment: str | None,
    by: str,
    via: ApprovalChannel,
    client: str | None,
    task_id: str | None,
) -> None:
    """Record the answer to the approval gate the run waits at (the caller then starts what is due).

    Raises:
        Conflict: `task_id` is given and another approval (or none) waits by now.
    """
    kernel.known(run_id)
    comment = checked_text(comment, "comment")

    def decide(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
        if task_id is not None and (state.approval is None or state.approval.task_id != task_id):
            raise Conflict(f"run '{run_id}' no longer waits for the approval of {task_id}", run_id=run_id)
        return engine.answer_approval(
            state, approved=approved, comment=comment, by=by, via=via, client=client, now=now
        )

    kernel.transition(run_id, decide)


def request(kernel: TransitionKernel, run_id: str) -> dict[str, Any] | None:
    """What a person is asked to approve (step, gate, prompt, the output, the channels), or None."""

    def shown(run: LoadedRun) -> dict[str, Any] | None:
        approval = run.state.approval
        if approval is None:
            return None
        evaluation = run.state.evaluations.get(approval.task_id)
        gate = run.engine.gates.get(approval.gate)
        return {
            **approval.model_dump(),
            "output": evaluation.output if evaluation else None,
            "via": list(gate.approval_channels()) if gate is not None else [],
        }

    return kernel.locked(run_id, nothing, shown)
