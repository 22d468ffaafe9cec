"""A run's state and the fold that builds it: `apply(state, event)` is the only code that changes it.

`apply` mutates the state it is given (a run's state is rebuilt for every transition otherwise, and
step outputs can be megabytes); callers that need the state before an event keep their own copy.
It checks `seq` like an aggregate checks its version: an out-of-order event is a bug, never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from loopengt_core.errors import StoreCorrupt
from loopengt_core.events import Event

RunStatus = Literal["running", "waiting_approval", "paused", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "waiting_approval", "completed", "failed", "skipped"]
ENDED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
RECENT_ANSWERS = 64


class GateResult(BaseModel):
    name: str
    passed: bool | None = Field(description="None while a person has not answered an approval gate.")
    feedback: str | None = None


class TaskView(BaseModel):
    """A task as the agent sees it."""

    task_id: str
    step: str
    agent: str
    attempt: int
    instructions: str
    input: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    feedback: str | None = None
    expires_at: str | None = None


class TaskState(TaskView):
    issued_at: str


class StepState(BaseModel):
    name: str
    status: StepStatus = "pending"
    attempts: int = Field(0, description="Attempts over the whole run.")
    attempt: int = Field(0, description="Attempt within the current visit.")
    visits: int = 0
    issued: int = Field(0, description="Tasks (and command runs) issued for this step: numbers task ids.")
    visit_input: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    last_failure: str | None = None


class Evaluation(BaseModel):
    """An output being checked: its gates so far. Keyed by task id (agent or command step)."""

    task_id: str
    step: str
    attempt: int
    output: Any = None
    results: list[GateResult] = Field(default_factory=list)


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


class Answer(BaseModel):
    """What `step` answered for a task, kept so the same submission gets the same answer."""

    digest: str | None = None
    accepted: bool = True
    gate_results: list[GateResult] = Field(default_factory=list)
    expired_after_seconds: float | None = None


class WorkspaceRecord(BaseModel):
    """The run's files as last recorded: git `tree` (tracked + untracked-not-ignored), `head`, and where."""

    root: str = Field(description="The run's working directory (commands run there).")
    head: str | None = None
    tree: str
    seq: int = Field(0, description="The event that recorded it.")
    commit: str | None = Field(
        None, description="The commit keeping this tree, when a checkpoint recorded it."
    )


class RunState(BaseModel):
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

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def due_commands(self) -> list[Command]:
        """Pending commands the service is to run: all but those paused by a setup error."""
        return [c for c in self.commands.values() if c.setup_error is None]

    def active_steps(self) -> set[str]:
        """Steps with work in flight: an open task, a pending command, an output under evaluation."""
        return (
            {t.step for t in self.tasks.values()}
            | {c.step for c in self.commands.values()}
            | {e.step for e in self.evaluations.values()}
        )


Applier = Callable[[RunState, dict[str, Any], str], None]
_APPLIERS: dict[str, Applier] = {}


def _on(kind: str) -> Callable[[Applier], Applier]:
    def register(fn: Applier) -> Applier:
        _APPLIERS[kind] = fn
        return fn

    return register


def apply(state: RunState | None, event: Event) -> RunState:
    """Fold one event into the state. Returns the state (a new one for run_started / run_forked)."""
    data = event.data
    if event.type == "run_started":
        state = RunState(
            run_id=data["run_id"],
            loop=data["loop"],
            goal=data.get("goal", ""),
            seed=data.get("seed", 0),
            spec_hash=data.get("spec_hash", ""),
            started_at=event.at,
            updated_at=event.at,
            parent_run_id=data.get("parent_run_id"),
            context=dict(data.get("context", {})),
            steps={name: StepState(name=name) for name in data["steps"]},
        )
        if data.get("workspace"):
            state.workspace = WorkspaceRecord(**data["workspace"], seq=event.seq)
    elif event.type == "run_forked":
        state = RunState.model_validate(data["state"])
        state.run_id, state.parent_run_id = data["run_id"], data["parent_run_id"]
        state.seq, state.started_at, state.checkpoints, state.answers = 0, event.at, 0, {}
        if data.get("workspace"):  # forked into a worktree: the fork works there
            state.workspace = WorkspaceRecord(**data["workspace"], seq=event.seq)
    elif state is None:
        raise StoreCorrupt(f"the first event is {event.type!r}, not run_started or run_forked")
    else:
        if event.seq != state.seq + 1:
            raise StoreCorrupt(
                f"run {state.run_id!r}: event seq {event.seq} after {state.seq}", run_id=state.run_id
            )
        _APPLIERS[event.type](state, data, event.at)
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


def _record_workspace(state: RunState, found: dict[str, Any] | None, *, commit: str | None = None) -> None:
    """An event that carries the workspace state (head, tree) makes it the last recorded one."""
    if found and state.workspace is not None:
        state.workspace = WorkspaceRecord(
            root=state.workspace.root,
            head=found.get("head"),
            tree=found["tree"],
            seq=state.seq + 1,
            commit=commit,
        )


def _answer(state: RunState, task_id: str) -> Answer:
    answer = state.answers.get(task_id)
    if answer is None:
        answer = state.answers[task_id] = Answer()
        while len(state.answers) > RECENT_ANSWERS:
            del state.answers[next(iter(state.answers))]
    return answer


@_on("task_issued")
def _task_issued(state: RunState, d: dict[str, Any], at: str) -> None:
    step = state.steps[d["step"]]
    step.status, step.issued, step.attempt = "running", step.issued + 1, d["attempt"]
    step.attempts += 1
    if d["attempt"] == 1:
        step.visits += 1
        step.visit_input = d.get("input") or {}
    state.tasks[d["task_id"]] = TaskState(
        task_id=d["task_id"],
        step=d["step"],
        agent=d["agent"],
        attempt=d["attempt"],
        instructions=d["instructions"],
        input=d.get("input") or {},
        output_schema=d.get("output_schema"),
        feedback=d.get("feedback"),
        issued_at=at,
        expires_at=d.get("expires_at"),
    )


@_on("output_submitted")
def _output_submitted(state: RunState, d: dict[str, Any], at: str) -> None:
    task = state.tasks.pop(d["task_id"])
    state.turn += 1
    _record_workspace(state, d.get("workspace"))
    _answer(state, task.task_id).digest = d.get("digest")
    if d.get("outcome", "success") == "success":
        state.evaluations[task.task_id] = Evaluation(
            task_id=task.task_id, step=task.step, attempt=task.attempt, output=d.get("output")
        )


_GATE_PASSED = {"gate_passed": True, "gate_failed": False, "approval_requested": None}


def _settle_approval(results: list[GateResult], d: dict[str, Any], passed: bool) -> None:
    for result in results:
        if result.name == d["gate"] and result.passed is None:
            result.passed, result.feedback = passed, d.get("comment")


def answer_in_log(events: Iterable[Event], task_id: str) -> Answer | None:
    """The answer a task got, folded from the whole log as the state folds it: for submissions older
    than the RECENT_ANSWERS the state keeps."""
    answer: Answer | None = None
    for event in events:
        d, kind = event.data, event.type
        if d.get("task_id") != task_id:
            continue
        if kind == "output_submitted":
            answer = Answer(digest=d.get("digest"))
        elif kind == "task_expired":
            answer = Answer(expired_after_seconds=d.get("after_seconds"))
        elif answer is not None and kind in _GATE_PASSED:
            answer.gate_results.append(
                GateResult(name=d["gate"], passed=_GATE_PASSED[kind], feedback=d.get("feedback"))
            )
        elif answer is not None and kind in ("approval_given", "approval_rejected"):
            _settle_approval(answer.gate_results, d, kind == "approval_given")
    return answer


def _gate_result(state: RunState, d: dict[str, Any], passed: bool | None) -> None:
    result = GateResult(name=d["gate"], passed=passed, feedback=d.get("feedback"))
    evaluation = state.evaluations.get(d["task_id"])
    if evaluation is not None:
        evaluation.results.append(result)
    _answer(state, d["task_id"]).gate_results.append(result)


@_on("gate_passed")
def _gate_passed(state: RunState, d: dict[str, Any], at: str) -> None:
    _gate_result(state, d, True)


@_on("gate_failed")
def _gate_failed(state: RunState, d: dict[str, Any], at: str) -> None:
    _gate_result(state, d, False)
    state.evaluations.pop(d["task_id"], None)


@_on("command_requested")
def _command_requested(state: RunState, d: dict[str, Any], at: str) -> None:
    state.commands[d["command_id"]] = Command.model_validate(d)
    if d["kind"] == "step" and not d.get("resumed"):  # `resumed`: requested again after a setup error
        step = state.steps[d["step"]]
        step.status, step.issued, step.attempt = "running", step.issued + 1, d["attempt"]
        step.attempts += 1
        if d["attempt"] == 1:
            step.visits += 1


@_on("command_started")
def _command_started(state: RunState, d: dict[str, Any], at: str) -> None:
    command = state.commands[d["command_id"]]
    command.runner, command.lease_until = d["runner"], d["lease_until"]


@_on("command_finished")
def _command_finished(state: RunState, d: dict[str, Any], at: str) -> None:
    _record_workspace(state, d.get("workspace"))
    if d.get("setup_error"):  # its program could not start: the command waits, the run pauses for a person
        command = state.commands[d["command_id"]]
        command.runner, command.lease_until, command.setup_error = None, None, d["setup_error"]
        state.status, state.error = "paused", command.blocked_text()
        return
    command = state.commands.pop(d["command_id"])
    if command.kind == "step" and d.get("exit_code") == 0:
        state.evaluations[command.task_id] = Evaluation(
            task_id=command.task_id,
            step=command.step,
            attempt=state.steps[command.step].attempt,
            output=d.get("result"),
        )


@_on("approval_requested")
def _approval_requested(state: RunState, d: dict[str, Any], at: str) -> None:
    state.approval = Approval(
        task_id=d["task_id"], step=d["step"], gate=d["gate"], prompt=d.get("prompt"), requested_at=at
    )
    if state.status != "paused":  # a person is needed either way; resume then makes it waiting_approval
        state.status = "waiting_approval"
    state.steps[d["step"]].status = "waiting_approval"
    _gate_result(state, d, None)


def _approval_answered(state: RunState, d: dict[str, Any], passed: bool) -> None:
    state.approval = None
    if state.status != "paused":
        state.status = "running"
    state.steps[d["step"]].status = "running"
    answer, evaluation = state.answers.get(d["task_id"]), state.evaluations.get(d["task_id"])
    if answer is not None:
        _settle_approval(answer.gate_results, d, passed)
    if evaluation is not None:
        _settle_approval(evaluation.results, d, passed)
    if not passed:
        state.evaluations.pop(d["task_id"], None)


@_on("approval_given")
def _approval_given(state: RunState, d: dict[str, Any], at: str) -> None:
    _approval_answered(state, d, True)


@_on("approval_rejected")
def _approval_rejected(state: RunState, d: dict[str, Any], at: str) -> None:
    _approval_answered(state, d, False)


@_on("retry_scheduled")
def _retry_scheduled(state: RunState, d: dict[str, Any], at: str) -> None:
    state.steps[d["step"]].last_failure = d.get("feedback")


@_on("task_expired")
def _task_expired(state: RunState, d: dict[str, Any], at: str) -> None:
    state.tasks.pop(d["task_id"], None)
    _answer(state, d["task_id"]).expired_after_seconds = d.get("after_seconds")


@_on("step_completed")
def _step_completed(state: RunState, d: dict[str, Any], at: str) -> None:
    step = state.steps[d["step"]]
    step.status, step.output, step.last_failure = "completed", d.get("output"), None
    state.evaluations.pop(d.get("task_id") or "", None)
    state.last_step = step.name


@_on("step_failed")
def _step_failed(state: RunState, d: dict[str, Any], at: str) -> None:
    step = state.steps[d["step"]]
    step.status, step.last_failure = "failed", d.get("reason")
    if d.get("fail_run_later"):
        state.failing = state.failing or d.get("reason")


@_on("checkpoint_taken")
def _checkpoint_taken(state: RunState, d: dict[str, Any], at: str) -> None:
    state.checkpoints += 1
    found = d.get("workspace")
    _record_workspace(state, found, commit=found.get("commit") if found else None)


@_on("workspace_accepted")
def _workspace_accepted(state: RunState, d: dict[str, Any], at: str) -> None:
    _record_workspace(state, d)


@_on("run_resumed")
def _run_resumed(state: RunState, d: dict[str, Any], at: str) -> None:
    if state.status == "paused":
        state.status = "waiting_approval" if state.approval is not None else "running"
        state.error = None


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


@_on("run_completed")
def _run_completed(state: RunState, d: dict[str, Any], at: str) -> None:
    state.final_output = d.get("final_output")
    _end(state, "completed", at)


@_on("run_failed")
def _run_failed(state: RunState, d: dict[str, Any], at: str) -> None:
    _end(state, "failed", at, error=d.get("reason"))


@_on("run_cancelled")
def _run_cancelled(state: RunState, d: dict[str, Any], at: str) -> None:
    _end(state, "cancelled", at, error=d.get("reason"))
