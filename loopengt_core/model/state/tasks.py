"""What a run's state keeps of each step and task: statuses, open tasks, gate results, evaluations.

Split from the run's state (`loopengt_core.model.state.run.RunState`) so the per-step records read on their own."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer

from loopengt_core.model.budget import Spend, Usage
from loopengt_core.model.stuck import Attempt

RunStatus = Literal["running", "waiting_approval", "paused", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "waiting_approval", "completed", "failed", "skipped"]
ENDED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
RECENT_ANSWERS = 64
STREAK = 20  # failed attempts in a row a step keeps for stuck detection


class Additive(BaseModel):
    """A dump leaves out the fields added since 0.2.0 while they hold their defaults, so the snapshots,
    checkpoints and forks of a run that never used them are the bytes 0.2.0 wrote (and 0.2.0 reads)."""

    added: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_unused_additions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.added:
                default = type(self).model_fields[name].get_default(call_default_factory=True)
                if name in data and getattr(self, name) == default:
                    del data[name]
        return data


class GateResult(BaseModel):
    """One gate's check of one submission."""

    name: str = Field(description="The gate's name in the step's spec.")
    passed: bool | None = Field(description="None while a person has not answered an approval gate.")
    feedback: str | None = Field(
        None,
        description="Why it failed (or a person's comment), sent to the next attempt as feedback; None when "
        "there is nothing to say.",
    )


class TaskView(Additive):
    """A task as the agent sees it."""

    added: ClassVar[tuple[str, ...]] = ("workdir", "judging", "judge_gate")

    task_id: str = Field(description="The task's id, `<step>#<n>`: pass it to step(run_id, task_id, output).")
    step: str = Field(description="The step the task belongs to.")
    agent: str = Field(
        description="The spec's agent that should do it (its role and instructions are in `instructions`).",
    )
    attempt: int = Field(
        description="Which attempt at the step this is within its current visit (1 = first).",
    )
    instructions: str = Field(
        description="What to do: the step's prompt rendered with the agent's role, the goal and the input.",
    )
    input: dict[str, Any] = Field(
        description="The task's input: `goal`, the run's `context`, earlier runs' outputs (`memory`, from "
        "context_from) and what the loop passes on (`dependencies`: the outputs of the steps it depends on; "
        "`previous`: the step before it; or what the pattern hands over, such as `assignment`, `evaluation`, "
        "`failure`, `merge`).",
    )
    output_schema: dict[str, Any] | None = Field(
        None,
        description="The JSON Schema the output must match (the step's output_schema, else its agent's); "
        "None: any output.",
    )
    feedback: str | None = Field(
        None,
        description="Why the previous attempt failed (its gates' feedback, or a person's hint given with "
        "resume); None on a first attempt.",
    )
    expires_at: str | None = Field(
        None,
        description="When the task expires unanswered (the step's timeout), ISO 8601 UTC; None: never.",
    )
    workdir: str | None = Field(
        None,
        description="Where to work when not in the run's directory: the step's own git worktree "
        "(`isolation: worktree`), or a join's merge of them; its command gates run there too.",
    )
    judging: str | None = Field(
        None,
        description="A judge task: the id of the task whose output it judges (input.output). Whoever submitted "
        "that output cannot submit this one.",
    )
    judge_gate: str | None = Field(None, description="A judge task's gate.")


class TaskState(TaskView):
    """An open task as the run keeps it: what the agent sees, plus when it was issued and usage read for it."""

    added: ClassVar[tuple[str, ...]] = ("transcript_usage", "workdir", "judging", "judge_gate")

    issued_at: str = Field(description="When the task was issued, ISO 8601 UTC.")
    transcript_usage: Usage | None = Field(
        None, description="Usage read from a transcript for this open task (usage_read); None: none read."
    )


class StepState(Additive):
    """A step's progress in a run: status, attempts, its last output and spend."""

    added: ClassVar[tuple[str, ...]] = ("spend", "streak", "output_seq")

    name: str = Field(description="The step's name in the loop spec.")
    status: StepStatus = Field(
        "pending",
        description="pending, running, waiting_approval, completed, failed or skipped.",
    )
    attempts: int = Field(0, description="Attempts over the whole run.")
    attempt: int = Field(0, description="Attempt within the current visit.")
    visits: int = Field(
        0,
        description="Times the loop entered this step (a route back to it starts a new visit).",
    )
    issued: int = Field(0, description="Tasks (and command runs) issued for this step: numbers task ids.")
    visit_input: dict[str, Any] = Field(
        default_factory=dict,
        description="The input the current visit was entered with (dependencies' outputs, the previous "
        "step's, what the pattern hands over), given to each retry.",
    )
    output: Any = Field(
        None,
        description="The step's last accepted output (what later steps and `final_output` read).",
    )
    output_seq: int | None = Field(
        None,
        description="The seq of the event recording `output` in this run's log, which later events refer to; "
        "None when no event of this log records it alone (a 0.2 log, a fork's parent).",
    )
    last_failure: str | None = Field(
        None,
        description="Why its last attempt failed; None when it has not failed.",
    )
    spend: Spend = Field(default_factory=Spend, description="Usage reported by this step's submissions.")
    streak: list[Attempt] = Field(
        default_factory=list, description="Failed attempts in a row since it last passed (stuck detection)."
    )


class HeldTask(BaseModel):
    """A task not issued because the run is paused (budget or stuck): `resume` issues it."""

    step: str = Field(description="The step the task is for.")
    attempt: int = Field(description="The attempt it will be.")
    feedback: str | None = Field(None, description="Feedback from the failed attempt before it.")
    input: dict[str, Any] = Field(
        default_factory=dict,
        description="The visit's input it will be issued with.",
    )


class Evaluation(Additive):
    """An output being checked: its gates so far. Keyed by task id (agent or command step)."""

    added: ClassVar[tuple[str, ...]] = ("submitted_by",)

    task_id: str = Field(description="The task whose output is checked.")
    step: str = Field(description="The step the output is for.")
    attempt: int = Field(description="The attempt the output is.")
    output: Any = Field(None, description="The submitted output.")
    results: list[GateResult] = Field(
        default_factory=list,
        description="The gates that have answered so far.",
    )
    submitted_by: str | None = Field(None, description="Who submitted the output (None: unknown).")
    # the seq of the event recording `output`, for step_completed to refer to; not in a snapshot (a
    # snapshot or fork between submission and acceptance writes the output in full, as 0.2 did)
    _output_seq: int | None = PrivateAttr(None)

    def output_seq(self) -> int | None:
        """The seq of the event recording the output (None after a snapshot or fork)."""
        return self._output_seq
