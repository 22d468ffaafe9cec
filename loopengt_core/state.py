"""A run's state and the fold that builds it: `apply(state, event)` is the only code that changes it.

`apply` mutates the state it is given (a run's state is rebuilt for every transition otherwise, and
step outputs can be megabytes); callers that need the state before an event keep their own copy.
It checks `seq` like an aggregate checks its version: an out-of-order event is a bug, never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer

from loopengt_core.budget import BudgetLimits, Spend, Usage, summed
from loopengt_core.errors import StoreCorrupt
from loopengt_core.events import (
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    BranchesMerged,
    BudgetReached,
    CheckpointTaken,
    CommandAbandoned,
    CommandFinished,
    CommandRequested,
    CommandStarted,
    Event,
    GateFailed,
    GatePassed,
    OutputSubmitted,
    RetryScheduled,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunPaused,
    RunResumed,
    RunStarted,
    StepCompleted,
    StepFailed,
    TaskExpired,
    TaskHeld,
    TaskIssued,
    UsageRead,
    WorkspaceAccepted,
    WorkspaceFiles,
    WorktreeAdded,
    materialised,
    parse_iso,
)
from loopengt_core.stuck import Attempt

RunStatus = Literal["running", "waiting_approval", "paused", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "waiting_approval", "completed", "failed", "skipped"]
ENDED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
RECENT_ANSWERS = 64
STREAK = 20  # failed attempts in a row a step keeps for stuck detection


class _Additive(BaseModel):
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
    name: str
    passed: bool | None = Field(description="None while a person has not answered an approval gate.")
    feedback: str | None = None


class TaskView(_Additive):
    """A task as the agent sees it."""

    added: ClassVar[tuple[str, ...]] = ("workdir", "judging", "judge_gate")

    task_id: str
    step: str
    agent: str
    attempt: int
    instructions: str
    input: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    feedback: str | None = None
    expires_at: str | None = None
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
    added: ClassVar[tuple[str, ...]] = ("transcript_usage", "workdir", "judging", "judge_gate")

    issued_at: str
    transcript_usage: Usage | None = Field(
        None, description="Usage read from a transcript for this open task (usage_read); None: none read."
    )


class StepState(_Additive):
    added: ClassVar[tuple[str, ...]] = ("spend", "streak", "output_seq")

    name: str
    status: StepStatus = "pending"
    attempts: int = Field(0, description="Attempts over the whole run.")
    attempt: int = Field(0, description="Attempt within the current visit.")
    visits: int = 0
    issued: int = Field(0, description="Tasks (and command runs) issued for this step: numbers task ids.")
    visit_input: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    output_seq: int | None = Field(
        None,
        description="The seq of the event recording `output` in this run's log, which later events refer to; "
        "None when no event of this log records it alone (a 0.2 log, a fork's parent).",
    )
    last_failure: str | None = None
    spend: Spend = Field(default_factory=Spend, description="Usage reported by this step's submissions.")
    streak: list[Attempt] = Field(
        default_factory=list, description="Failed attempts in a row since it last passed (stuck detection)."
    )


class HeldTask(BaseModel):
    """A task not issued because the run is paused (budget or stuck): `resume` issues it."""

    step: str
    attempt: int
    feedback: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)


class Evaluation(_Additive):
    """An output being checked: its gates so far. Keyed by task id (agent or command step)."""

    added: ClassVar[tuple[str, ...]] = ("submitted_by",)

    task_id: str
    step: str
    attempt: int
    output: Any = None
    results: list[GateResult] = Field(default_factory=list)
    submitted_by: str | None = Field(None, description="Who submitted the output (None: unknown).")
    # the seq of the event recording `output`, for step_completed to refer to; not in a snapshot (a
    # snapshot or fork between submission and acceptance writes the output in full, as 0.2 did)
    _output_seq: int | None = PrivateAttr(None)

    def output_seq(self) -> int | None:
        return self._output_seq


LEASE_GRACE_SECONDS = 30.0  # a claim's lease: the command's timeout plus this


class Command(BaseModel):
    """A command the service must run: a command step or a command gate. Its result comes back as an event."""

    command_id: str
    kind: Literal["step", "gate"]
    step: str
    task_id: str
    gate: str | None = None
    argv: list[str]
    timeout_seconds: float
    not_before: str
    runner: str | None = None
    lease_until: str | None = None
    setup_error: str | None = Field(
        None,
        description="Its program could not be found or started (why, and the fix): the run is paused for a "
        "person, and resume requests it again.",
    )

    def claimed_at(self) -> datetime | None:
        """When its current claim was made (None when unclaimed): the lease is the claim's moment plus the
        timeout and LEASE_GRACE_SECONDS, so any process can tell from the log."""
        if self.lease_until is None:
            return None
        return parse_iso(self.lease_until) - timedelta(seconds=self.timeout_seconds + LEASE_GRACE_SECONDS)

    def blocked_text(self) -> str:
        """What cannot run, for a person: `gate 'tests' of step 'fix' cannot run: <setup_error>`."""
        what = (
            f"gate '{self.gate}' of step '{self.step}'"
            if self.kind == "gate"
            else f"command step '{self.step}'"
        )
        return f"{what} cannot run: {self.setup_error}"


class Approval(BaseModel):
    task_id: str
    step: str
    gate: str
    prompt: str | None = None
    requested_at: str


class Answer(_Additive):
    """What `step` answered for a task, kept so the same submission gets the same answer."""

    added: ClassVar[tuple[str, ...]] = ("usage",)

    digest: str | None = None
    accepted: bool = True
    gate_results: list[GateResult] = Field(default_factory=list)
    expired_after_seconds: float | None = None
    usage: Literal["reported", "transcript"] | None = Field(
        None,
        description="Whose usage the task's spend is: the agent's (`step(usage=...)`, which wins) or a "
        "transcript's; None: unknown.",
    )


class TranscriptMark(BaseModel):
    """How far a client's transcript has been read for this run (usage_read)."""

    offset: int = Field(description="The byte where the next read starts.")
    last: str | None = Field(None, description="The last message counted (not counted again).")


class WorkspaceRecord(BaseModel):
    """The run's files as last recorded: git `tree` (tracked + untracked-not-ignored), `head`, and where."""

    root: str = Field(description="The run's working directory (commands run there).")
    head: str | None = None
    tree: str
    seq: int = Field(0, description="The event that recorded it.")
    commit: str | None = Field(
        None, description="The commit keeping this tree, when a checkpoint recorded it."
    )


class WorktreeRecord(BaseModel):
    """A git worktree of the run (worktree_added, branches_merged): where one step works."""

    kind: Literal["branch", "join"] = Field(description="An isolated step's own, or a join's merge.")
    path: str = Field(description="The worktree's directory (absolute).")
    branch: str = Field(description="Its branch, `loopengt/<run>/<step>`.")
    base: str = Field(description="The commit it was made from.")
    commit: str | None = Field(None, description="join: the last merge commit.")


class RunState(_Additive):
    added: ClassVar[tuple[str, ...]] = (
        "worktrees",
        "spend",
        "paused_for",
        "budget_warning",
        "held",
        "budget",
        "transcripts",
        "memory",
    )

    run_id: str
    loop: str
    goal: str = ""
    status: RunStatus = "running"
    seq: int = 0
    turn: int = 0
    seed: int = 0
    spec_hash: str = ""
    started_at: str
    updated_at: str
    ended_at: str | None = None
    parent_run_id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, StepState] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    evaluations: dict[str, Evaluation] = Field(default_factory=dict)
    commands: dict[str, Command] = Field(default_factory=dict)
    approval: Approval | None = None
    answers: dict[str, Answer] = Field(default_factory=dict)
    last_step: str | None = None
    failing: str | None = Field(None, description="Why the run fails once its open branches finish.")
    final_output: Any = None
    error: str | None = None
    checkpoints: int = 0
    workspace: WorkspaceRecord | None = None
    worktrees: dict[str, WorktreeRecord] = Field(
        default_factory=dict, description="The run's git worktrees, by the step that works in each."
    )
    spend: Spend = Field(default_factory=Spend, description="Usage reported over the run.")
    paused_for: Literal["budget", "stuck"] | None = Field(
        None, description="Why the run paused itself (a setup error pauses with `commands` blocked)."
    )
    budget_warning: str | None = Field(None, description="An audit budget's reached limit.")
    held: list[HeldTask] = Field(default_factory=list, description="Tasks to issue on resume.")
    budget: BudgetLimits | None = Field(None, description="Run limits raised by resume(budget=...).")
    transcripts: dict[str, TranscriptMark] = Field(
        default_factory=dict, description="Transcripts read for usage, by their key (usage_read)."
    )
    memory: list[dict[str, Any]] = Field(
        default_factory=list, description="Earlier runs' outputs (context_from), each task's input.memory."
    )

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def due_commands(self) -> list[Command]:
        """Pending commands the service is to run: all but those paused by a setup error."""
        return [c for c in self.commands.values() if c.setup_error is None]

    def active_steps(self) -> set[str]:
        """Steps with work in flight: an open task, a pending command, an output under evaluation, a task
        held by a pause."""
        return (
            {t.step for t in self.tasks.values()}
            | {h.step for h in self.held}
            | {c.step for c in self.commands.values()}
            | {e.step for e in self.evaluations.values()}
        )


E = TypeVar("E", bound=Event)
_APPLIERS: dict[type[Event], Callable[[RunState, Any], None]] = {}


def _on(kind: type[E]) -> Callable[[Callable[[RunState, E], None]], Callable[[RunState, E], None]]:
    """Register the applier of one event class (a dict lookup by class: `apply` runs for every event)."""

    def register(fn: Callable[[RunState, E], None]) -> Callable[[RunState, E], None]:
        _APPLIERS[kind] = fn
        return fn

    return register


def apply(state: RunState | None, event: Event) -> RunState:
    """Fold one event into the state. Returns the state (a new one for run_started / run_forked)."""
    applier = _APPLIERS.get(type(event))
    if applier is not None and state is not None:
        if event.seq != state.seq + 1:
            raise StoreCorrupt(
                f"run {state.run_id!r}: event seq {event.seq} after {state.seq}", run_id=state.run_id
            )
        applier(state, event)
    elif isinstance(event, RunStarted):
        state = RunState(
            run_id=event.run_id,
            loop=event.loop,
            goal=event.goal,
            seed=event.seed,
            spec_hash=event.spec_hash,
            started_at=event.at,
            updated_at=event.at,
            parent_run_id=event.parent_run_id,
            context=dict(event.context),
            steps={name: StepState(name=name) for name in event.steps},
            memory=list(event.context_from),
        )
        if event.workspace is not None:
            state.workspace = _workspace_record(event.workspace, event.seq)
    elif isinstance(event, RunForked):
        state = RunState.model_validate(event.state)
        state.run_id, state.parent_run_id = event.run_id, event.parent_run_id
        state.seq, state.started_at, state.checkpoints, state.answers = 0, event.at, 0, {}
        for step in state.steps.values():  # their seqs are the parent's log's
            step.output_seq = None
        # the parent's worktrees stay the parent's: the fork's isolated steps get their own
        state.worktrees = {}
        for task in state.tasks.values():
            task.workdir = None
        if event.workspace is not None:  # forked into a worktree: the fork works there
            state.workspace = _workspace_record(event.workspace, event.seq)
    else:
        raise StoreCorrupt(f"the first event is {event.type!r}, not run_started or run_forked")
    state.seq = event.seq
    state.updated_at = event.at
    return state


def project_run(events: Iterable[Event], state: RunState | None = None) -> RunState:
    """The fold of `events`, starting from `state` (a snapshot) or from nothing."""
    for event in events:
        state = apply(state, event)
    if state is None:
        raise StoreCorrupt("a run without events")
    return state


def _workspace_record(found: WorkspaceFiles, seq: int) -> WorkspaceRecord:
    if found.root is None:
        raise StoreCorrupt(f"event {seq} binds the run to files without naming their root")
    return WorkspaceRecord(root=found.root, head=found.head, tree=found.tree, seq=seq)


def _record_workspace(
    state: RunState, found: WorkspaceFiles | WorkspaceAccepted | None, *, commit: str | None = None
) -> None:
    """An event that carries the workspace state (head, tree) makes it the last recorded one."""
    if found is not None and state.workspace is not None:
        state.workspace = WorkspaceRecord(
            root=state.workspace.root, head=found.head, tree=found.tree, seq=state.seq + 1, commit=commit
        )


def _answer(state: RunState, task_id: str) -> Answer:
    answer = state.answers.get(task_id)
    if answer is None:
        answer = state.answers[task_id] = Answer()
        while len(state.answers) > RECENT_ANSWERS:
            del state.answers[next(iter(state.answers))]
    return answer


def output_refs(state: RunState) -> dict[int, int]:
    """id() of each step output this log records -> its seq: what a task's input may refer to."""
    return {
        id(step.output): step.output_seq
        for step in state.steps.values()
        if step.output_seq is not None and isinstance(step.output, dict | list)
    }


def _materialised(
    state: RunState, task_input: dict[str, Any], refs: dict[str, int], seq: int
) -> dict[str, Any]:
    """A task's input with the outputs it refers to, from the steps' outputs (the fold holds them)."""
    by_seq = {step.output_seq: step.output for step in state.steps.values() if step.output_seq is not None}

    def output_at(ref: int) -> Any:
        if ref not in by_seq:
            raise StoreCorrupt(
                f"run {state.run_id!r}: task_issued {seq} refers to output {ref}, which no step holds",
                run_id=state.run_id,
            )
        return by_seq[ref]

    try:
        return materialised(task_input, refs, output_at)
    except ValueError as e:
        raise StoreCorrupt(f"run {state.run_id!r}: task_issued {seq}: {e}", run_id=state.run_id) from e


@_on(TaskIssued)
def _task_issued(state: RunState, e: TaskIssued) -> None:
    task_input = e.input or {}
    if e.input_refs:
        task_input = _materialised(state, task_input, e.input_refs, e.seq)
    if e.judging is None:  # a judge gate's task spends none of the step's attempts
        step = state.steps[e.step]
        step.status, step.issued, step.attempt = "running", step.issued + 1, e.attempt
        step.attempts += 1
        if e.attempt == 1:
            step.visits += 1
            step.visit_input = task_input
    state.tasks[e.task_id] = TaskState(
        task_id=e.task_id,
        step=e.step,
        agent=e.agent,
        attempt=e.attempt,
        instructions=e.instructions,
        input=task_input,
        output_schema=e.output_schema,
        feedback=e.feedback,
        issued_at=e.at,
        expires_at=e.expires_at,
        workdir=state.worktrees[e.step].path if e.step in state.worktrees else None,
        judging=e.judging,
        judge_gate=e.judge_gate,
    )


@_on(OutputSubmitted)
def _output_submitted(state: RunState, e: OutputSubmitted) -> None:
    task = state.tasks.pop(e.task_id)
    state.turn += 1
    answer = _answer(state, task.task_id)
    for spend in (state.spend, state.steps[task.step].spend):
        if e.usage is not None and e.usage.tokens() is not None:  # the agent's own report wins
            spend.remove(task.transcript_usage)
            spend.add(e.usage)
        else:
            spend.add(e.usage)
            spend.count(task.transcript_usage)
    if e.usage is not None and e.usage.tokens() is not None:
        answer.usage = "reported"
    elif task.transcript_usage is not None:
        answer.usage = "transcript"
    _record_workspace(state, e.workspace)
    answer.digest = e.digest
    if e.outcome == "success" and task.judging is None:  # a judge's verdict follows as a gate event
        evaluation = state.evaluations[task.task_id] = Evaluation(
            task_id=task.task_id, step=task.step, attempt=task.attempt, output=e.output
        )
        evaluation._output_seq = e.seq
        if e.submitted_by is not None:
            evaluation.submitted_by = e.submitted_by


GateEvent = GatePassed | GateFailed | ApprovalRequested
ApprovalAnswer = ApprovalGiven | ApprovalRejected


def _settle_approval(results: list[GateResult], e: ApprovalAnswer) -> None:
    for result in results:
        if result.name == e.gate and result.passed is None:
            result.passed, result.feedback = isinstance(e, ApprovalGiven), e.comment


def _passed(e: GateEvent) -> bool | None:
    """A gate's verdict; None for an approval gate still waiting for a person."""
    return None if isinstance(e, ApprovalRequested) else isinstance(e, GatePassed)


def _gate_result(e: GateEvent) -> GateResult:
    feedback = None if isinstance(e, ApprovalRequested) else e.feedback
    return GateResult(name=e.gate, passed=_passed(e), feedback=feedback)


def answer_in_log(events: Iterable[Event], task_id: str) -> Answer | None:
    """The answer a task got, folded from the whole log as the state folds it: for submissions older
    than the RECENT_ANSWERS the state keeps."""
    answer: Answer | None = None
    for event in events:
        match event:
            case OutputSubmitted() if event.task_id == task_id:
                answer = Answer(digest=event.digest)
            case TaskExpired() if event.task_id == task_id:
                answer = Answer(expired_after_seconds=event.after_seconds)
            case GatePassed() | GateFailed() | ApprovalRequested() if (
                answer is not None and event.task_id == task_id
            ):
                answer.gate_results.append(_gate_result(event))
            case ApprovalGiven() | ApprovalRejected() if answer is not None and event.task_id == task_id:
                _settle_approval(answer.gate_results, event)
    return answer


def _record_gate(state: RunState, e: GateEvent) -> None:
    result = _gate_result(e)
    evaluation = state.evaluations.get(e.task_id)
    if evaluation is not None:
        evaluation.results.append(result)
    _answer(state, e.task_id).gate_results.append(result)
    judged_by = state.answers.get(f"{e.task_id}:{e.gate}")  # a judge gate's task: its verdict, for its judge
    if judged_by is not None:
        judged_by.gate_results.append(result)


@_on(GatePassed)
def _gate_passed(state: RunState, e: GatePassed) -> None:
    _record_gate(state, e)


@_on(GateFailed)
def _gate_failed(state: RunState, e: GateFailed) -> None:
    _record_gate(state, e)
    state.evaluations.pop(e.task_id, None)


@_on(CommandRequested)
def _command_requested(state: RunState, e: CommandRequested) -> None:
    state.commands[e.command_id] = Command(
        command_id=e.command_id,
        kind=e.kind,
        step=e.step,
        task_id=e.task_id,
        gate=e.gate,
        argv=list(e.argv),
        timeout_seconds=e.timeout_seconds,
        not_before=e.not_before,
    )
    if e.kind == "step" and not e.resumed:  # `resumed`: requested again after a setup error
        step = state.steps[e.step]
        step.status, step.issued, step.attempt = "running", step.issued + 1, e.attempt
        step.attempts += 1
        if e.attempt == 1:
            step.visits += 1


@_on(CommandStarted)
def _command_started(state: RunState, e: CommandStarted) -> None:
    command = state.commands[e.command_id]
    command.runner, command.lease_until = e.runner, e.lease_until


@_on(CommandAbandoned)
def _command_abandoned(state: RunState, e: CommandAbandoned) -> None:
    command = state.commands[e.command_id]
    command.runner, command.lease_until = None, None


@_on(CommandFinished)
def _command_finished(state: RunState, e: CommandFinished) -> None:
    _record_workspace(state, e.workspace)
    if e.setup_error:  # its program could not start: the command waits, the run pauses for a person
        command = state.commands[e.command_id]
        command.runner, command.lease_until, command.setup_error = None, None, e.setup_error
        state.status, state.error = "paused", command.blocked_text()
        return
    command = state.commands.pop(e.command_id)
    if command.kind == "step" and e.exit_code == 0:
        evaluation = state.evaluations[command.task_id] = Evaluation(
            task_id=command.task_id,
            step=command.step,
            attempt=state.steps[command.step].attempt,
            output=e.result,
        )
        evaluation._output_seq = e.seq


@_on(ApprovalRequested)
def _approval_requested(state: RunState, e: ApprovalRequested) -> None:
    state.approval = Approval(task_id=e.task_id, step=e.step, gate=e.gate, prompt=e.prompt, requested_at=e.at)
    if state.status != "paused":  # a person is needed either way; resume then makes it waiting_approval
        state.status = "waiting_approval"
    state.steps[e.step].status = "waiting_approval"
    _record_gate(state, e)


def _approval_answered(state: RunState, e: ApprovalAnswer) -> None:
    state.approval = None
    if state.status != "paused":
        state.status = "running"
    state.steps[e.step].status = "running"
    answer, evaluation = state.answers.get(e.task_id), state.evaluations.get(e.task_id)
    if answer is not None:
        _settle_approval(answer.gate_results, e)
    if evaluation is not None:
        _settle_approval(evaluation.results, e)
    if isinstance(e, ApprovalRejected):
        state.evaluations.pop(e.task_id, None)


_on(ApprovalGiven)(_approval_answered)
_on(ApprovalRejected)(_approval_answered)


@_on(RetryScheduled)
def _retry_scheduled(state: RunState, e: RetryScheduled) -> None:
    step = state.steps[e.step]
    step.last_failure = e.feedback
    if e.compared is not None:  # recorded unless policy.stuck is false
        step.streak.append(
            Attempt(**e.compared.model_dump(), attempt=e.attempt - 1, at=e.at, feedback=e.feedback)
        )
        del step.streak[:-STREAK]


@_on(TaskExpired)
def _task_expired(state: RunState, e: TaskExpired) -> None:
    state.tasks.pop(e.task_id, None)
    _answer(state, e.task_id).expired_after_seconds = e.after_seconds


@_on(StepCompleted)
def _step_completed(state: RunState, e: StepCompleted) -> None:
    step = state.steps[e.step]
    evaluation = state.evaluations.pop(e.task_id or "", None)
    if e.output_seq is None:  # the output in the event (logs before 0.3, or an output this log lacks)
        step.output, step.output_seq = e.output, None
    elif evaluation is not None and evaluation.output_seq() in (e.output_seq, None):  # None: from a snapshot
        step.output, step.output_seq = evaluation.output, e.output_seq
    else:
        raise StoreCorrupt(
            f"run {state.run_id!r}: step_completed {e.seq} refers to output {e.output_seq}, "
            f"which is not task {e.task_id!r}'s output under evaluation",
            run_id=state.run_id,
        )
    step.status, step.last_failure = "completed", None
    step.streak = []
    state.last_step = step.name


@_on(StepFailed)
def _step_failed(state: RunState, e: StepFailed) -> None:
    step = state.steps[e.step]
    step.status, step.last_failure = "failed", e.reason
    if e.fail_run_later:
        state.failing = state.failing or e.reason


@_on(CheckpointTaken)
def _checkpoint_taken(state: RunState, e: CheckpointTaken) -> None:
    state.checkpoints += 1
    _record_workspace(state, e.workspace, commit=e.workspace.commit if e.workspace else None)


@_on(WorkspaceAccepted)
def _workspace_accepted(state: RunState, e: WorkspaceAccepted) -> None:
    _record_workspace(state, e)


@_on(WorktreeAdded)
def _worktree_added(state: RunState, e: WorktreeAdded) -> None:
    state.worktrees[e.step] = WorktreeRecord(kind="branch", path=e.path, branch=e.branch, base=e.base)
    for task in state.tasks.values():
        if task.step == e.step:
            task.workdir = e.path


@_on(BranchesMerged)
def _branches_merged(state: RunState, e: BranchesMerged) -> None:
    state.worktrees[e.step] = WorktreeRecord(
        kind="join", path=e.path, branch=e.branch, base=e.base, commit=e.commit
    )
    merge = {"branches": [dict(m) for m in e.merged], "commit": e.commit, "branch": e.branch}
    if e.conflicts:
        merge["conflicts"] = [dict(c) for c in e.conflicts]
    step = state.steps[e.step]
    step.visit_input = {**step.visit_input, "merge": merge}  # retries of the join see it too
    for task in state.tasks.values():
        if task.step == e.step:
            task.workdir = e.path
            task.input = {**task.input, "merge": merge}


@_on(RunPaused)
def _run_paused(state: RunState, e: RunPaused) -> None:
    state.status, state.paused_for, state.error = "paused", e.reason, e.detail


@_on(BudgetReached)
def _budget_reached(state: RunState, e: BudgetReached) -> None:
    state.budget_warning = e.detail


@_on(TaskHeld)
def _task_held(state: RunState, e: TaskHeld) -> None:
    state.held.append(HeldTask(step=e.step, attempt=e.attempt, feedback=e.feedback, input=dict(e.input)))


@_on(RunResumed)
def _run_resumed(state: RunState, e: RunResumed) -> None:
    if state.status == "paused":
        state.status = "waiting_approval" if state.approval is not None else "running"
        state.error = None
    state.paused_for = None
    if e.budget is not None:
        base = state.budget or BudgetLimits()
        state.budget = base.model_copy(update=e.budget.model_dump(exclude_none=True))
    state.held = []  # resume issues them in the same transition (or holds them again)
    if e.hint is not None or e.budget is not None:  # a person looked: a stuck step starts afresh
        for step in state.steps.values():
            step.streak = []


def _end(state: RunState, status: RunStatus, at: str, *, error: str | None = None) -> None:
    state.status, state.ended_at, state.error = status, at, error
    state.tasks.clear()
    state.commands.clear()
    state.evaluations.clear()
    state.approval = None
    for step in state.steps.values():
        if step.status == "pending":
            step.status = "skipped"
        elif step.status in ("running", "waiting_approval"):
            step.status = "failed" if status == "failed" else "skipped"


@_on(UsageRead)
def _usage_read(state: RunState, e: UsageRead) -> None:
    """A transcript's usage: counted for an open task (taken back if its submission reports usage) or a
    submitted one that reported none; never for a task whose agent reported its own."""
    state.transcripts[e.transcript] = TranscriptMark(
        offset=e.to_offset, last=e.message_ids[-1] if e.message_ids else None
    )
    spends = (state.spend, state.steps[e.step].spend) if e.step in state.steps else (state.spend,)
    task = state.tasks.get(e.task_id)
    if task is not None:
        task.transcript_usage = summed(task.transcript_usage, e.usage)
        for spend in spends:
            spend.add(e.usage, count=False)  # counted as a known task when it is submitted
        return
    answer = state.answers.get(e.task_id)
    if answer is None or answer.usage == "reported":
        return
    for spend in spends:
        spend.add(e.usage, count=answer.usage is None)
    answer.usage = "transcript"


@_on(RunCompleted)
def _run_completed(state: RunState, e: RunCompleted) -> None:
    state.final_output = e.final_output
    _end(state, "completed", e.at)


@_on(RunFailed)
def _run_failed(state: RunState, e: RunFailed) -> None:
    _end(state, "failed", e.at, error=e.reason)


@_on(RunCancelled)
def _run_cancelled(state: RunState, e: RunCancelled) -> None:
    _end(state, "cancelled", e.at, error=e.reason)
