"""How task, output, gate, approval and step events change a run's state, and the lookups they share
(a task's answer, its working folder, the outputs a task's input refers to)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from loopengt_core.model.errors import StoreCorrupt
from loopengt_core.model.events import (
    ApprovalGiven,
    ApprovalRejected,
    ApprovalRequested,
    Event,
    GateFailed,
    GatePassed,
    OutputSubmitted,
    RetryScheduled,
    StepCompleted,
    StepFailed,
    TaskExpired,
    TaskHeld,
    TaskIssued,
    materialised,
)
from loopengt_core.model.state.records import Answer, Approval, record_workspace
from loopengt_core.model.state.registry import on
from loopengt_core.model.state.run import RunState
from loopengt_core.model.state.tasks import (
    RECENT_ANSWERS,
    STREAK,
    Evaluation,
    GateResult,
    HeldTask,
    TaskState,
)
from loopengt_core.model.stuck import Attempt


def answer_slot(state: RunState, task_id: str) -> Answer:
    """The task's answer record, made if new; the state keeps only the RECENT_ANSWERS latest."""
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


def materialised_input(
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


@on(TaskIssued)
def _task_issued(state: RunState, e: TaskIssued) -> None:
    task_input = e.input or {}
    if e.input_refs:
        task_input = materialised_input(state, task_input, e.input_refs, e.seq)
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


@on(OutputSubmitted)
def _output_submitted(state: RunState, e: OutputSubmitted) -> None:
    task = state.tasks.pop(e.task_id)
    state.turn += 1
    answer = answer_slot(state, task.task_id)
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
    record_workspace(state, e.workspace)
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
    answer_slot(state, e.task_id).gate_results.append(result)
    judged_by = state.answers.get(f"{e.task_id}:{e.gate}")  # a judge gate's task: its verdict, for its judge
    if judged_by is not None:
        judged_by.gate_results.append(result)


@on(GatePassed)
def _gate_passed(state: RunState, e: GatePassed) -> None:
    _record_gate(state, e)


@on(GateFailed)
def _gate_failed(state: RunState, e: GateFailed) -> None:
    _record_gate(state, e)
    state.evaluations.pop(e.task_id, None)


@on(ApprovalRequested)
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


on(ApprovalGiven)(_approval_answered)
on(ApprovalRejected)(_approval_answered)


@on(RetryScheduled)
def _retry_scheduled(state: RunState, e: RetryScheduled) -> None:
    step = state.steps[e.step]
    step.last_failure = e.feedback
    if e.compared is not None:  # recorded unless policy.stuck is false
        step.streak.append(
            Attempt(**e.compared.model_dump(), attempt=e.attempt - 1, at=e.at, feedback=e.feedback)
        )
        del step.streak[:-STREAK]


@on(TaskExpired)
def _task_expired(state: RunState, e: TaskExpired) -> None:
    state.tasks.pop(e.task_id, None)
    answer_slot(state, e.task_id).expired_after_seconds = e.after_seconds


@on(StepCompleted)
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


@on(StepFailed)
def _step_failed(state: RunState, e: StepFailed) -> None:
    state.resolving.pop(e.step, None)  # its join goes no further: the run fails with it
    step = state.steps[e.step]
    step.status, step.last_failure = "failed", e.reason
    if e.fail_run_later:
        state.failing = state.failing or e.reason


@on(TaskHeld)
def _task_held(state: RunState, e: TaskHeld) -> None:
    state.held.append(HeldTask(step=e.step, attempt=e.attempt, feedback=e.feedback, input=dict(e.input)))
