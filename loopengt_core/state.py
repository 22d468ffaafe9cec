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
    JoinDeferred,
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
    """One gate's check of one submission."""

    name: str = Field(description="The gate's name in the step's spec.")
    passed: bool | None = Field(description="None while a person has not answered an approval gate.")
    feedback: str | None = Field(
        None,
        description="Why it failed (or a person's comment), sent to the next attempt as feedback; None when "
        "there is nothing to say.",
    )


class TaskView(_Additive):
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


class StepState(_Additive):
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


class Evaluation(_Additive):
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


LEASE_GRACE_SECONDS = 30.0  # a claim's lease: the command's timeout plus this


class Command(BaseModel):
    """A command the service must run: a command step or a command gate. Its result comes back as an event."""

    command_id: str = Field(description="`<task_id>:<gate>` (a gate) or the task id (a command step).")
    kind: Literal["step", "gate"] = Field(
        description="A command step (`run:` in the spec) or a command gate.",
    )
    step: str = Field(description="The step it runs for.")
    task_id: str = Field(description="The task whose output it checks (a command step's own task).")
    gate: str | None = Field(None, description="The gate's name (kind gate); None for a command step.")
    argv: list[str] = Field(
        description="The program and its arguments, run without a shell in the run's directory (or the task's "
        "workdir).",
    )
    timeout_seconds: float = Field(
        description="How long it may run before it is killed and counts as failed.",
    )
    not_before: str = Field(
        description="When it may start, ISO 8601 UTC (later than requested after a retry's backoff).",
    )
    runner: str | None = Field(
        None,
        description="The process that claimed it (None: unclaimed); another takes it over once the lease "
        "ends.",
    )
    lease_until: str | None = Field(
        None,
        description="When the runner's claim ends unless its result is recorded, ISO 8601 UTC.",
    )
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
    """An approval a person must give before the run goes on."""

    task_id: str = Field(description="The task whose output waits for the approval.")
    step: str = Field(description="The step of that task.")
    gate: str = Field(description="The approval gate's name.")
    prompt: str | None = Field(
        None,
        description="What the person is asked (the gate's prompt); None: the default question.",
    )
    requested_at: str = Field(description="When the approval was requested, ISO 8601 UTC.")


class Answer(_Additive):
    """What `step` answered for a task, kept so the same submission gets the same answer."""

    added: ClassVar[tuple[str, ...]] = ("usage",)

    digest: str | None = Field(
        None,
        description="A digest of the submitted output: the same task submitted again with it gets the same "
        "answer.",
    )
    accepted: bool = Field(True, description="Whether the submission was accepted.")
    gate_results: list[GateResult] = Field(
        default_factory=list,
        description="The gates' results given in the answer.",
    )
    expired_after_seconds: float | None = Field(
        None,
        description="Set when the task had expired: how long after its issue it was submitted.",
    )
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
    head: str | None = Field(
        None,
        description="The commit HEAD pointed at; None in a repository without commits.",
    )
    tree: str = Field(description="The git tree of the run's files (tracked and untracked, not ignored).")
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
    """A run's whole state: the fold of its events (`apply`), and what snapshots and checkpoints store."""

    added: ClassVar[tuple[str, ...]] = (
        "worktrees",
        "line",
        "resolving",
        "spend",
        "paused_for",
        "budget_warning",
        "held",
        "budget",
        "transcripts",
        "memory",
    )

    run_id: str = Field(description="The run's id.")
    loop: str = Field(description="The name of the loop spec the run follows.")
    goal: str = Field("", description="The spec's goal when the run started.")
    status: RunStatus = Field(
        "running",
        description="running, waiting_approval, paused, completed, failed or cancelled.",
    )
    seq: int = Field(0, description="The seq of the last event folded into this state.")
    turn: int = Field(
        0, description="Submissions recorded so far, success or failure (the spec's max_turns caps it)."
    )
    seed: int = Field(
        0,
        description="The run's random seed: retry jitter is drawn from it, so a replay decides the same.",
    )
    spec_hash: str = Field(
        "",
        description="The hash of the spec the run started with, to tell a changed spec on resume.",
    )
    started_at: str = Field(description="When the run started, ISO 8601 UTC.")
    updated_at: str = Field(description="When its newest event was recorded, ISO 8601 UTC.")
    ended_at: str | None = Field(
        None,
        description="When it completed, failed or was cancelled; None while it goes on.",
    )
    parent_run_id: str | None = Field(None, description="The run it was forked from; None for a new run.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The spec's context with the run's inputs merged in: every task's `input.context`.",
    )
    steps: dict[str, StepState] = Field(default_factory=dict, description="Every step's state, by name.")
    tasks: dict[str, TaskState] = Field(default_factory=dict, description="The open tasks, by task id.")
    evaluations: dict[str, Evaluation] = Field(
        default_factory=dict,
        description="Submitted outputs whose gates have not all answered, by task id.",
    )
    commands: dict[str, Command] = Field(
        default_factory=dict,
        description="Commands the service must run (command steps and command gates), by command id.",
    )
    approval: Approval | None = Field(
        None,
        description="The approval a person must answer; None when none is asked.",
    )
    answers: dict[str, Answer] = Field(
        default_factory=dict,
        description="What `step` answered for recent tasks (at most 64), by task id, so a repeated submission "
        "gets the same answer.",
    )
    last_step: str | None = Field(
        None,
        description="The step that last accepted an output (its output is the final one when the run ends).",
    )
    failing: str | None = Field(None, description="Why the run fails once its open branches finish.")
    final_output: Any = Field(None, description="The run's result once it completed.")
    error: str | None = Field(
        None,
        description="Why the run failed, was cancelled or paused; None otherwise.",
    )
    checkpoints: int = Field(0, description="Checkpoints taken of the run so far (numbers their ids).")
    workspace: WorkspaceRecord | None = Field(
        None,
        description="The run's files as last recorded in git; None without a git workspace.",
    )
    worktrees: dict[str, WorktreeRecord] = Field(
        default_factory=dict, description="The run's git worktrees, by the step that works in each."
    )
    line: str | None = Field(
        None,
        description="Where the run's line of work goes on after a join merged worktree branches: that "
        "join's worktree (the latest). Later steps without a worktree of their own work there, and their "
        "command gates and command steps run there; None: in the run's directory.",
    )
    resolving: dict[str, str] = Field(
        default_factory=dict,
        description="A join's `resolve` step at work on the join's merge conflicts -> the join, whose task "
        "is issued when the resolve step completes.",
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
        """Whether the run completed, failed or was cancelled (nothing more can happen to it)."""
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
            | set(self.resolving.values())
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
        state.worktrees, state.line = {}, None
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
        workdir=workdir(state, e.step),
        judging=e.judging,
        judge_gate=e.judge_gate,
    )


def workdir(state: RunState, step: str) -> str | None:
    """Where `step` works when not in the run's directory: its own worktree, else the run's line after
    a join (the latest join's worktree, which holds the merge and what later steps did to it)."""
    found = state.worktrees.get(step)
    return found.path if found is not None else state.line


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
    state.resolving.pop(e.step, None)  # a resolve step done: its join's task follows
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
    state.resolving.pop(e.step, None)  # its join goes no further: the run fails with it
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
    state.line = e.path
    merge = {"branches": [dict(m) for m in e.merged], "commit": e.commit, "branch": e.branch}
    if e.conflicts:
        merge["conflicts"] = [dict(c) for c in e.conflicts]
    step = state.steps[e.step]
    step.visit_input = {**step.visit_input, "merge": merge}  # retries of the join see it too
    for task in state.tasks.values():
        if task.step == e.step:
            task.workdir = e.path
            task.input = {**task.input, "merge": merge}


@_on(JoinDeferred)
def _join_deferred(state: RunState, e: JoinDeferred) -> None:
    task = state.tasks.pop(e.task_id)
    step = state.steps[e.step]
    step.attempts -= 1  # never worked on: the join's task issued after the resolve step is its visit
    if task.attempt == 1:
        step.visits -= 1
    state.resolving[e.resolve] = e.step


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
