"""The pure engine: given a run's state, an input and the time, decide the events that follow.

No I/O and no clock: time comes in as `now`, command results come in as arguments, and randomness
(jitter) comes from the run's seed. Each decision emits events through `Transaction.emit`, which applies
them to the state as it goes, so later decisions in one transition see earlier ones and the live
state is, by construction, the fold of the events the caller stores.

Public methods validate their arguments before emitting anything: a refused call changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from loopengt_core.engine import (
    briefing,
    budgeting,
    commands,
    evaluation,
    issuing,
    judge,
    judging,
    lifecycle,
    patterns,
)
from loopengt_core.engine.reading import open_tasks_text, workspace_files
from loopengt_core.engine.transaction import (
    OUTCOMES,
    Outcome,
    Transaction,
)
from loopengt_core.model.budget import BudgetLimits, Usage
from loopengt_core.model.errors import Conflict, InvalidArgument, NotFound
from loopengt_core.model.events import (
    AnyEvent,
    ApprovalGiven,
    ApprovalRejected,
    OutputSubmitted,
    RunFailed,
    RunForked,
    RunStarted,
    TaskExpired,
    iso,
    parse_iso,
)
from loopengt_core.model.spec import Agent, ApprovalChannel, Gate, LoopSpec, Step
from loopengt_core.model.state import RunState


class Engine:
    """Decisions for runs of one spec."""

    def __init__(self, spec: LoopSpec) -> None:
        self.spec = spec
        self.steps: dict[str, Step] = {s.name: s for s in spec.steps}
        self.agents: dict[str, Agent] = {a.name: a for a in spec.agents}
        self.gates: dict[str, Gate] = {g.name: g for g in spec.policy.verification_gates}
        stop_turns = spec.stop_value("max_turns")
        self.max_turns = (
            min(spec.policy.max_turns, stop_turns) if isinstance(stop_turns, int) else spec.policy.max_turns
        )
        limits = [spec.policy.max_total_time_seconds, spec.stop_value("timeout")]
        numeric = [float(v) for v in limits if isinstance(v, int | float) and not isinstance(v, bool)]
        self.time_limit_seconds = min(numeric) if numeric else None
        # goal_met and custom stop conditions: (kind, expression), checked in order after each step.
        self.goals: list[tuple[str, str]] = [
            (c.condition_type, c.condition())
            for c in spec.stop_conditions
            if c.condition_type in ("goal_met", "custom") and isinstance(c.condition(), str)
        ]
        self.budget = spec.policy.budget
        # isolation: worktree: the steps with a worktree of their own, and the joins that merge them
        self.isolated = frozenset(s.name for s in spec.steps if spec.isolated(s))
        self.joins: dict[str, list[str]] = (
            {s.name: found for s in spec.steps if (found := spec.joins(s))} if self.isolated else {}
        )
        self.stuck = spec.policy.stuck_policy()
        quality = spec.stop_value("quality_threshold")
        self.quality: float | None = (
            float(quality)
            if isinstance(quality, int | float) and spec.pattern != "evaluator_optimizer"
            else None
        )

    # --- decisions about the run as a whole and about commands, made in their own modules

    claim_command = commands.claim_command
    finish_command = commands.finish_command
    cancel = lifecycle.cancel
    fail = lifecycle.fail
    take_checkpoint = lifecycle.take_checkpoint
    accept_workspace = lifecycle.accept_workspace
    add_worktree = lifecycle.add_worktree
    merge_branches = lifecycle.merge_branches
    resume = lifecycle.resume
    record_usage = lifecycle.record_usage

    # --- commands ------------------------------------------------------------------------------

    def start(
        self,
        *,
        run_id: str,
        now: datetime,
        seed: int,
        context: dict[str, Any],
        spec_hash: str,
        workspace: dict[str, Any] | None = None,
        memory: list[dict[str, Any]] | None = None,
    ) -> list[AnyEvent]:
        """`workspace` ({root, head, tree}, computed by the service) binds the run to a git work tree;
        `memory` (read by the service, `loopengt_core.service.memory`) is what earlier runs left its tasks."""
        tx = Transaction(None, now)
        started = RunStarted(
            seq=tx.seq,
            at=tx.at,
            run_id=run_id,
            loop=self.spec.name,
            goal=self.spec.goal,
            spec_hash=spec_hash,
            context=context,
            seed=seed,
            steps=[s.name for s in self.spec.steps],
            workspace=workspace_files(workspace),
        )
        if memory:  # set only when given, so a run without memory writes the bytes it always did
            started = started.model_copy(update={"context_from": memory})
        tx.emit(started)
        for move in patterns.initial(self.spec, tx.state):
            issuing.start_step(self, tx, move)
        evaluation.finish(self, tx)
        return tx.events

    def fork(
        self,
        parent: RunState,
        *,
        run_id: str,
        checkpoint_id: str,
        checkpoint_seq: int,
        now: datetime,
        workspace: dict[str, Any] | None = None,
    ) -> list[AnyEvent]:
        """A new run that begins where `parent` (the state at a checkpoint) stood.

        `workspace` ({root, head, tree}): the worktree the fork works in; else it keeps the parent's.
        """
        state = parent.model_copy(deep=True)
        for task in state.tasks.values():
            step = self.steps[task.step]
            timeout = (
                briefing.judge_timeout(self, step, task.agent)
                if task.judging
                else briefing.step_timeout(self, step)
            )
            task.expires_at = iso(now + timedelta(seconds=timeout)) if timeout else None
        for command in state.commands.values():
            command.runner = command.lease_until = None
        tx = Transaction(None, now)
        tx.emit(
            RunForked(
                seq=tx.seq,
                at=tx.at,
                run_id=run_id,
                parent_run_id=parent.run_id,
                checkpoint_id=checkpoint_id,
                checkpoint_seq=checkpoint_seq,
                state=state.model_dump(mode="json"),
                workspace=workspace_files(workspace),
            )
        )
        return tx.events

    def tick(self, state: RunState, now: datetime) -> list[AnyEvent]:
        """Enforce deadlines: expired tasks and the run's time budget."""
        if state.ended:
            return []
        tx = Transaction(state, now)
        if self.time_limit_seconds is not None:
            elapsed = (now - parse_iso(state.started_at)).total_seconds()
            if elapsed >= self.time_limit_seconds:
                tx.emit(
                    RunFailed(
                        seq=tx.seq,
                        at=tx.at,
                        reason=(
                            f"max_total_time_seconds {self.time_limit_seconds:g} reached after {elapsed:.0f} s"
                            f"{evaluation.before_passed(self, state)}"
                        ),
                    )
                )
                return tx.events
        for task in list(state.tasks.values()):
            if task.expires_at is not None and parse_iso(task.expires_at) <= now:
                after = (parse_iso(task.expires_at) - parse_iso(task.issued_at)).total_seconds()
                tx.emit(
                    TaskExpired(
                        seq=tx.seq, at=tx.at, task_id=task.task_id, step=task.step, after_seconds=after
                    )
                )
                why = f"task {task.task_id} expired after {after:g} s without a submission"
                if task.judging is not None:
                    gate = self.gates[task.judge_gate or ""]
                    judging.verdict(
                        self, tx, task, gate, judge.unjudged(gate.name, task.agent, f"gave no verdict: {why}")
                    )
                else:
                    evaluation.fail_step(self, tx, task.step, why)
        evaluation.finish(self, tx)
        return tx.events

    def submit(
        self,
        state: RunState,
        task_id: str,
        output: Any,
        *,
        outcome: str,
        error: str | None,
        digest: str,
        now: datetime,
        workspace: dict[str, Any] | None = None,
        usage: Usage | None = None,
        submitted_by: str | None = None,
    ) -> list[AnyEvent]:
        """Record an agent's submission and decide what follows (gates, retry, next step, end).

        `workspace` ({head, tree}): the run's files as the service found them at the submission.
        `usage`: what the work used, as the agent reported it (None: unknown).
        `submitted_by`: who submits (the caller as the service sees it; None: unknown). A judge task is
        refused from whoever submitted the output it judges, and a judge's output must match
        `judge.OUTPUT_SCHEMA`; either refusal records nothing.
        """
        self.require_active(state)
        if outcome not in OUTCOMES:
            raise InvalidArgument(f"outcome must be one of: {', '.join(OUTCOMES)} (got {outcome!r})")
        reported: Outcome = "success" if outcome == "success" else "failure"
        task = state.tasks.get(task_id)
        if task is None:
            raise NotFound(
                f"run '{state.run_id}' has no open task '{task_id}'; {open_tasks_text(state)}",
                run_id=state.run_id,
            )
        if task.judging is not None:
            judging.check_judge_submission(self, state, task, output, outcome, submitted_by)
        tx = Transaction(state, now)
        tx.emit(
            OutputSubmitted(
                seq=tx.seq,
                at=tx.at,
                task_id=task_id,
                step=task.step,
                attempt=task.attempt,
                outcome=reported,
                output=output,
                error=error,
                digest=digest,
                workspace=workspace_files(workspace),
                usage=usage,
                submitted_by=submitted_by,  # None: no key, as ever
            )
        )
        if task.judging is not None:
            gate = self.gates[task.judge_gate or ""]
            assert gate.judge is not None, "a judge task's gate is a judge gate"
            result = (
                judge.verdict(gate.name, task.agent, gate.judge, output)
                if outcome == "success"
                else judge.unjudged(gate.name, task.agent, f"reported failure: {error or 'no reason given'}")
            )
            judging.verdict(
                self, tx, task, gate, result, float(output["score"]) if outcome == "success" else None
            )
        elif outcome == "failure":
            evaluation.fail_step(
                self, tx, task.step, f"attempt {task.attempt} reported failure: {error or 'no reason given'}"
            )
        else:
            evaluation.evaluate(self, tx, task_id)
        evaluation.finish(self, tx)
        return tx.events

    def answer_approval(
        self,
        state: RunState,
        *,
        approved: bool,
        comment: str | None,
        by: str,
        via: ApprovalChannel,
        client: str | None = None,
        now: datetime,
    ) -> list[AnyEvent]:
        """A person's answer to the approval the run waits for: approved, the step goes on; rejected, it fails
        with the comment as the reason.

        Raises:
            Conflict: the run waits for no approval, or the answer came through a channel the gate's
                `approval.via` does not allow.
        """
        approval = state.approval
        if approval is None:
            raise Conflict(
                f"run '{state.run_id}' is not waiting for approval (status: {state.status})",
                run_id=state.run_id,
            )
        allowed = self.gates[approval.gate].approval_channels() if approval.gate in self.gates else ()
        if allowed and via not in allowed:
            raise Conflict(
                f"gate '{approval.gate}' of run '{state.run_id}' takes answers only through "
                f"{', '.join(allowed)} (its approval.via in the spec), not {via}"
                + ("; a person answers it with `loopengt approve`" if "cli" in allowed else ""),
                run_id=state.run_id,
            )
        tx = Transaction(state, now)
        answer = ApprovalGiven if approved else ApprovalRejected
        tx.emit(
            answer(
                seq=tx.seq,
                at=tx.at,
                task_id=approval.task_id,
                step=approval.step,
                gate=approval.gate,
                comment=comment,
                by=by,
                via=via,
                client=client,
            )
        )
        if approved:
            evaluation.continue_after(self, tx, approval.task_id)
        else:
            reason = f"rejected by {by} at gate '{approval.gate}'" + (f": {comment}" if comment else "")
            evaluation.fail_step(self, tx, approval.step, reason)
        evaluation.finish(self, tx)
        return tx.events

    # --- decisions -----------------------------------------------------------------------------

    def require_active(self, state: RunState) -> None:
        """Refuse (Conflict) a change to a run that has ended."""
        if state.ended:
            detail = f": {state.error}" if state.error else ""
            raise Conflict(
                f"run '{state.run_id}' has ended ({state.status}{detail}); nothing more can change it",
                run_id=state.run_id,
            )

    # --- issuing work --------------------------------------------------------------------------

    # --- what others read: kept on the engine, decided in `loopengt_core.engine.budgeting` and `.briefing`

    def limits(self, state: RunState) -> BudgetLimits | None:
        """The budget limits that apply to this run (`loopengt_core.engine.budgeting.run_limits`)."""
        return budgeting.run_limits(self, state)

    def budget_text(self, state: RunState, step: str | None, now: datetime) -> str | None:
        """The budget line a task's instructions carry (`loopengt_core.engine.budgeting.budget_text`)."""
        return budgeting.budget_text(self, state, step, now)

    def wall_clock(self, state: RunState, now: datetime) -> list[AnyEvent]:
        """The events the run's time limit decides now (`loopengt_core.engine.budgeting.wall_clock`)."""
        return budgeting.wall_clock(self, state, now)

    def output_schema(self, step: Step) -> dict[str, Any] | None:
        """The JSON Schema a step's output must match (`loopengt_core.engine.briefing.output_schema`)."""
        return briefing.output_schema(self, step)
