"""The pure engine: given a run's state, an input and the time, decide the events that follow.

No I/O and no clock: time comes in as `now`, command results come in as arguments, and randomness
(jitter) comes from the run's seed. Each decision emits events through `Transaction.emit`, which applies
them to the state as it goes, so later decisions in one transition see earlier ones and the live
state is, by construction, the fold of the events the caller stores.

Public methods validate their arguments before emitting anything: a refused call changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from loopengt_core import gatetypes, judge, patterns
from loopengt_core.budget import BudgetLimits, Usage
from loopengt_core.engine import briefing, budgeting
from loopengt_core.engine.reading import emit_verdict, open_tasks_text, workspace_files
from loopengt_core.engine.transaction import (
    COMMAND_OUTPUT_CHARS,
    DEFAULT_COMMAND_TIMEOUT_SECONDS,
    OUTCOMES,
    Outcome,
    Transaction,
    backoff_delay,
)
from loopengt_core.errors import Conflict, InvalidArgument, NotFound
from loopengt_core.events import (
    AnyEvent,
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
    by_reference,
    iso,
    parse_iso,
)
from loopengt_core.expressions import STOP_NAMES, ConditionFailed, ExpressionError, compile_condition
from loopengt_core.gates import command_feedback, schema_gate, tail
from loopengt_core.gatetypes import GateContext
from loopengt_core.patterns import Move
from loopengt_core.render import render
from loopengt_core.spec import Agent, ApprovalChannel, Gate, JudgeRule, LoopSpec, OnFailure, Step
from loopengt_core.state import GateResult, RunState, TaskState, output_refs
from loopengt_core.stuck import Compared, diagnose, normalise
from loopengt_core.transcripts import Segment, TranscriptClient


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
        `memory` (read by the service, `loopengt_core.memory`) is what earlier runs left its tasks."""
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
            self._start_step(tx, move)
        self._finish(tx)
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
                            f"{self._before_passed(state)}"
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
                    self._verdict(
                        tx, task, gate, judge.unjudged(gate.name, task.agent, f"gave no verdict: {why}")
                    )
                else:
                    self._failed(tx, task.step, why)
        self._finish(tx)
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
        self._require_active(state)
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
            self._check_judge_submission(state, task, output, outcome, submitted_by)
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
            self._verdict(tx, task, gate, result, float(output["score"]) if outcome == "success" else None)
        elif outcome == "failure":
            self._failed(
                tx, task.step, f"attempt {task.attempt} reported failure: {error or 'no reason given'}"
            )
        else:
            self._evaluate(tx, task_id)
        self._finish(tx)
        return tx.events

    def claim_command(
        self,
        state: RunState,
        command_id: str,
        *,
        runner: str,
        lease_until: datetime,
        now: datetime,
        abandoned: Literal["runner_died", "lease_expired"] | None = None,
        abandoned_at: str | None = None,
    ) -> list[AnyEvent]:
        """Claim a command for `runner`. `abandoned`: an earlier claim is given up (why), which the trace shows;
        `abandoned_at`: when that claim was made."""
        command = state.commands.get(command_id)
        if command is None:
            raise Conflict(
                f"command {command_id!r} is not pending in run '{state.run_id}'", run_id=state.run_id
            )
        tx = Transaction(state, now)
        if abandoned is not None and command.runner is not None:
            tx.emit(
                CommandAbandoned(
                    seq=tx.seq,
                    at=tx.at,
                    command_id=command_id,
                    runner=command.runner,
                    started_at=abandoned_at,
                    reason=abandoned,
                )
            )
        tx.emit(
            CommandStarted(
                seq=tx.seq, at=tx.at, command_id=command_id, runner=runner, lease_until=iso(lease_until)
            )
        )
        return tx.events

    def finish_command(
        self,
        state: RunState,
        command_id: str,
        *,
        exit_code: int | None,
        output: str,
        duration_seconds: float,
        timed_out: bool,
        now: datetime,
        workspace: dict[str, Any] | None = None,
        setup_error: str | None = None,
        cancelled_by: str | None = None,
    ) -> list[AnyEvent]:
        """Record a command's result (run by the service) and decide what follows.

        `cancelled_by`: who stopped it (its process group was killed): a failed attempt, which the policy
        retries or fails as it would a timed-out gate.

        `workspace` ({head, tree}): the run's files right after the command. `setup_error`: its program
        could not be found or started (why, and the fix); that is no attempt's fault, so nothing is
        decided: the run pauses for a person and `resume` requests the command again.
        """
        command = state.commands.get(command_id)
        if command is None:
            raise Conflict(
                f"command {command_id!r} is not pending in run '{state.run_id}'", run_id=state.run_id
            )
        passed = exit_code == 0 and not timed_out and cancelled_by is None
        text = tail(output, COMMAND_OUTPUT_CHARS)
        seconds = round(duration_seconds, 3)
        result = {"exit_code": exit_code, "output": text, "duration_seconds": seconds, "timed_out": timed_out}
        tx = Transaction(state, now)
        tx.emit(
            CommandFinished(
                seq=tx.seq,
                at=tx.at,
                command_id=command_id,
                exit_code=exit_code,
                output=text,
                duration_seconds=seconds,
                timed_out=timed_out,
                result=result,
                setup_error=setup_error or None,  # None: no key, as ever
                workspace=workspace_files(workspace),
                cancelled_by=cancelled_by or None,  # None: no key
            )
        )
        if setup_error:
            return tx.events
        feedback = command_feedback(
            command.argv,
            exit_code,
            text,
            timed_out=timed_out,
            seconds=duration_seconds,
            cancelled_by=cancelled_by,
        )
        if command.kind == "gate":
            gate = self.gates[command.gate or ""]
            if passed:
                tx.emit(
                    GatePassed(
                        seq=tx.seq,
                        at=tx.at,
                        task_id=command.task_id,
                        step=command.step,
                        gate=gate.name,
                        feedback=None,
                    )
                )
                self._continue(tx, command.task_id)
            else:
                tx.emit(
                    GateFailed(
                        seq=tx.seq,
                        at=tx.at,
                        task_id=command.task_id,
                        step=command.step,
                        gate=gate.name,
                        feedback=gate.feedback or feedback,
                        on_failure=gate.on_failure,
                    )
                )
                self._failed(tx, command.step, gate.feedback or feedback, abort=gate.on_failure == "abort")
        elif passed:
            self._evaluate(tx, command.task_id)
        else:
            self._failed(tx, command.step, feedback)
        self._finish(tx)
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
            self._continue(tx, approval.task_id)
        else:
            reason = f"rejected by {by} at gate '{approval.gate}'" + (f": {comment}" if comment else "")
            self._failed(tx, approval.step, reason)
        self._finish(tx)
        return tx.events

    def cancel(self, state: RunState, reason: str, now: datetime) -> list[AnyEvent]:
        """End an active run as cancelled, with `reason`."""
        self._require_active(state)
        tx = Transaction(state, now)
        tx.emit(RunCancelled(seq=tx.seq, at=tx.at, reason=reason or "cancelled"))
        return tx.events

    def fail(self, state: RunState, reason: str, now: datetime) -> list[AnyEvent]:
        """End the run `failed`: whoever drives it found it cannot go on (its agent cannot start)."""
        self._require_active(state)
        tx = Transaction(state, now)
        tx.emit(RunFailed(seq=tx.seq, at=tx.at, reason=reason or "failed"))
        return tx.events

    def take_checkpoint(
        self,
        state: RunState,
        checkpoint_id: str,
        label: str | None,
        now: datetime,
        workspace: dict[str, Any] | None = None,
    ) -> list[AnyEvent]:
        """`workspace` ({head, tree, commit, ref}): the files at the checkpoint and the commit keeping them."""
        tx = Transaction(state, now)
        tx.emit(
            CheckpointTaken(
                seq=tx.seq,
                at=tx.at,
                checkpoint_id=checkpoint_id,
                label=label,
                workspace=workspace_files(workspace),
            )
        )
        return tx.events

    def accept_workspace(
        self, state: RunState, workspace: dict[str, Any], changed: list[str], now: datetime
    ) -> list[AnyEvent]:
        """Files changed outside the loop are accepted as the run's state (resume with accept_drift)."""
        self._require_active(state)
        files = WorkspaceFiles.model_validate(workspace)
        tx = Transaction(state, now)
        tx.emit(WorkspaceAccepted(seq=tx.seq, at=tx.at, head=files.head, tree=files.tree, changed=changed))
        return tx.events

    def add_worktree(
        self, state: RunState, step: str, *, path: str, branch: str, base: str, now: datetime
    ) -> list[AnyEvent]:
        """An isolated step's worktree, made by the service, becomes where its tasks work."""
        tx = Transaction(state, now)
        tx.emit(WorktreeAdded(seq=tx.seq, at=tx.at, step=step, path=path, branch=branch, base=base))
        return tx.events

    def merge_branches(self, state: RunState, merge: BranchesMerged, now: datetime) -> list[AnyEvent]:
        """A join's branches, merged by the service (`merge`'s seq and time are set here). On conflicts,
        a join with a `resolve` step defers its task to that step's, which gets the conflicts."""
        tx = Transaction(state, now)
        tx.emit(merge.model_copy(update={"seq": tx.seq, "at": tx.at}))
        resolve = self.steps[merge.step].resolve
        task = next((t for t in tx.state.tasks.values() if t.step == merge.step), None)
        if merge.conflicts and resolve is not None and task is not None:
            tx.emit(
                JoinDeferred(seq=tx.seq, at=tx.at, step=merge.step, task_id=task.task_id, resolve=resolve)
            )
            found = tx.state.steps[merge.step].visit_input["merge"]
            self._start_step(tx, Move(resolve, {"merge": found, "join": merge.step}))
        return tx.events

    def resume(
        self,
        state: RunState,
        now: datetime,
        *,
        budget: BudgetLimits | None = None,
        hint: str | None = None,
    ) -> list[AnyEvent]:
        """Continue the run; commands paused by a setup error are requested again, spending no attempt.

        Tasks held while the run was paused (budget, stuck) are issued now, `hint` first in their
        feedback; `budget` raises the run's limits (a task still over them is held again).
        """
        if state.ended:
            return []
        tx = Transaction(state, now)
        held = list(state.held)
        tx.emit(RunResumed(seq=tx.seq, at=tx.at, reason="resumed", budget=budget, hint=hint))
        for task in held:
            feedback = "\n\n".join(
                f for f in (f"A person's hint: {hint}" if hint else None, task.feedback) if f
            )
            self._issue(tx, self.steps[task.step], task.attempt, feedback or None, task.input)
        for command in [c for c in state.commands.values() if c.setup_error is not None]:
            evaluation = state.evaluations.get(command.task_id)
            tx.emit(
                CommandRequested(
                    seq=tx.seq,
                    at=tx.at,
                    command_id=command.command_id,
                    kind=command.kind,
                    step=command.step,
                    task_id=command.task_id,
                    gate=command.gate,
                    argv=command.argv,
                    attempt=evaluation.attempt
                    if evaluation is not None
                    else state.steps[command.step].attempt,
                    timeout_seconds=command.timeout_seconds,
                    not_before=tx.at,
                    resumed=True,
                )
            )
        return tx.events

    def record_usage(
        self,
        state: RunState,
        segments: list[Segment],
        *,
        client: TranscriptClient,
        transcript: str,
        now: datetime,
    ) -> list[AnyEvent]:
        """Usage read from a transcript (`transcripts.segments`), one event per task it belongs to.

        A segment of a task neither open nor recently answered (`state.answers`) is left out; what
        the agent reported for a task with `step(usage=...)` wins over it (see `state`).
        """
        tx = Transaction(state, now)
        for segment in segments:
            task_id = segment.task_id
            if segment.usage is None or (task_id not in state.tasks and task_id not in state.answers):
                continue
            task = state.tasks.get(task_id)
            tx.emit(
                UsageRead(
                    seq=tx.seq,
                    at=tx.at,
                    task_id=task_id,
                    step=task.step if task is not None else task_id.rsplit("#", 1)[0],
                    client=client,
                    transcript=transcript,
                    from_offset=segment.start,
                    to_offset=segment.end,
                    message_ids=segment.message_ids,
                    usage=segment.usage,
                )
            )
        return tx.events

    # --- decisions -----------------------------------------------------------------------------

    def _require_active(self, state: RunState) -> None:
        if state.ended:
            detail = f": {state.error}" if state.error else ""
            raise Conflict(
                f"run '{state.run_id}' has ended ({state.status}{detail}); nothing more can change it",
                run_id=state.run_id,
            )

    def _evaluate(self, tx: Transaction, task_id: str) -> None:
        """Pure checks of an output: its schema, the pattern's needs, condition gates. Then the rest."""
        evaluation = tx.state.evaluations[task_id]
        step = self.steps[evaluation.step]
        results: list[tuple[GateResult, OnFailure]] = []
        schema = briefing.output_schema(self, step)
        if schema is not None and step.run is None:
            results.append((schema_gate("output_schema", schema, evaluation.output), "retry"))
        pattern_check = patterns.check_output(self.spec, step, evaluation.output)
        if pattern_check is not None:
            results.append((pattern_check, "retry"))
        scope = briefing.gate_scope(self, tx.state, evaluation.output, evaluation.attempt)
        for gate in briefing.step_gates(self, step):
            context = GateContext(gate=gate.name, feedback=gate.feedback, scope=scope)
            for gate_type, config in gatetypes.configured(gate):
                verdict = gatetypes.judge(gate_type, config, evaluation.output, context)
                results.append((verdict, gate.on_failure))
        for result, on_failure in results:
            emit_verdict(tx, task_id, step.name, result, on_failure)
        failed = [(r, f) for r, f in results if not r.passed]
        if failed:
            feedback = "\n".join(r.feedback or f"gate '{r.name}' failed" for r, _ in failed)
            self._failed(tx, step.name, feedback, abort=any(f == "abort" for _, f in failed))
            return
        self._continue(tx, task_id)

    def _continue(self, tx: Transaction, task_id: str) -> None:
        """The next unchecked command gate, then approval gates, then acceptance."""
        evaluation = tx.state.evaluations[task_id]
        step = self.steps[evaluation.step]
        checked = {r.name for r in evaluation.results}
        for gate in briefing.step_gates(self, step):
            if gate.command is not None and gate.name not in checked:
                tx.emit(
                    CommandRequested(
                        seq=tx.seq,
                        at=tx.at,
                        command_id=f"{task_id}:{gate.name}",
                        kind="gate",
                        step=step.name,
                        task_id=task_id,
                        gate=gate.name,
                        argv=gate.command,
                        attempt=evaluation.attempt,
                        timeout_seconds=gate.timeout_seconds or DEFAULT_COMMAND_TIMEOUT_SECONDS,
                        not_before=tx.at,
                    )
                )
                return
        for gate in briefing.step_gates(self, step):
            if gate.judge is not None and gate.name not in checked:
                self._issue_judge(tx, task_id, gate, gate.judge)
                return
        for gate in briefing.step_gates(self, step):
            if gate.approval and gate.name not in checked:
                tx.emit(
                    ApprovalRequested(
                        seq=tx.seq,
                        at=tx.at,
                        task_id=task_id,
                        step=step.name,
                        gate=gate.name,
                        prompt=gate.prompt,
                    )
                )
                return
        self._accept(tx, task_id)

    def _issue_judge(self, tx: Transaction, judged: str, gate: Gate, rule: JudgeRule) -> None:
        """A judge gate's task: the judge role gets the output, the rubric and the threshold."""
        state = tx.state
        evaluation = state.evaluations[judged]
        step = self.steps[evaluation.step]
        agent = self.agents.get(rule.agent)
        preamble = []
        if agent is not None and agent.system_prompt:
            scope = {**state.context, "goal": self.spec.goal, "step": step.name, "agent": rule.agent}
            preamble.append(render(agent.system_prompt, {**scope, "run_id": state.run_id}).strip())
        if self.spec.goal:
            preamble.append(f"Goal: {self.spec.goal}")
        timeout = briefing.judge_timeout(self, step, rule.agent)
        task_input = judge.task_input(
            briefing.task_input_of(self, state, step, {}),
            judged=judged,
            step=step.name,
            agent=step.agent,
            attempt=evaluation.attempt,
            output=evaluation.output,
            rule=rule,
        )
        tx.emit(
            TaskIssued(
                seq=tx.seq,
                at=tx.at,
                task_id=judge.task_id(judged, gate.name),
                step=step.name,
                agent=rule.agent,
                attempt=evaluation.attempt,
                instructions=judge.instructions(gate.name, step.name, judged, rule, preamble),
                input=task_input,
                output_schema=judge.OUTPUT_SCHEMA,
                feedback=None,
                expires_at=iso(tx.now + timedelta(seconds=timeout)) if timeout else None,
                judging=judged,
                judge_gate=gate.name,
            )
        )

    def _check_judge_submission(
        self, state: RunState, task: TaskState, output: Any, outcome: str, submitted_by: str | None
    ) -> None:
        """Refuse (recording nothing) a judge answer from the judged output's submitter, or off schema."""
        judged = state.evaluations.get(task.judging or "")
        if judged is not None and submitted_by is not None and judged.submitted_by == submitted_by:
            raise Conflict(
                f"task {task.task_id} judges step {task.step}'s output ({judged.task_id}), which this "
                f"session submitted ({submitted_by}); another agent must judge it: the '{task.agent}' role, "
                "from another MCP session (headless: its own command, --agent "
                f"{task.agent}=CMD). Nothing was recorded",
                run_id=state.run_id,
            )
        if outcome == "success":
            problems = judge.output_problems(output)
            if problems:
                raise InvalidArgument(
                    f"task {task.task_id} is a judge task: its output must be "
                    '{"score": 0..1, "passed": true|false, "reasons": [text, ...]}, and '
                    + "; ".join(problems)
                    + ". Nothing was recorded: submit it again",
                    run_id=state.run_id,
                )

    def _verdict(
        self, tx: Transaction, task: TaskState, gate: Gate, result: GateResult, score: float | None = None
    ) -> None:
        """A judge's verdict on `task.judging`: the gate passes (on to the next gate) or fails (retry)."""
        judged = task.judging or ""
        emit_verdict(tx, judged, task.step, result, gate.on_failure, score=score)
        if result.passed:
            self._continue(tx, judged)
            return
        text = "\n".join(f for f in (gate.feedback, result.feedback) if f)
        self._failed(tx, task.step, text, abort=gate.on_failure == "abort")

    def _accept(self, tx: Transaction, task_id: str) -> None:
        state = tx.state
        evaluation = state.evaluations[task_id]
        step, output = self.steps[evaluation.step], evaluation.output
        recorded = evaluation.output_seq()
        join = state.resolving.get(step.name)
        tx.emit(
            StepCompleted(seq=tx.seq, at=tx.at, step=step.name, task_id=task_id, output_seq=recorded)
            if recorded is not None  # the output is in the log once, at that seq
            else StepCompleted(seq=tx.seq, at=tx.at, step=step.name, output=output, task_id=task_id)
        )
        if join is not None:  # a resolve step's work is the join's start: its task follows, on those files
            visit = state.steps[join].visit_input
            resolved = {**visit["merge"], "resolved_by": {"step": step.name, "output": output}}
            self._issue(tx, self.steps[join], 1, None, {**visit, "merge": resolved})
            return
        stop = self._stop_reason(state, output)
        if stop is not None:
            self._complete(tx, step, task_id, output, stop)
            return
        following = patterns.after(self.spec, state, step, output)
        if following.done:
            self._complete(tx, step, task_id, output, following.reason)
            return
        for move in following.moves:
            self._start_step(tx, move)
        if not state.active_steps() and state.approval is None and not state.failing:
            self._complete(tx, step, task_id, output, "no step follows")

    def _complete(self, tx: Transaction, step: Step, task_id: str, output: Any, reason: str) -> None:
        """End the run completed, unless the final output misses the top-level output_schema."""
        if self.spec.output_schema is not None:
            result = schema_gate(
                "final_output_schema",
                self.spec.output_schema.json_schema(),
                output,
                what="top-level output_schema (the run's final output)",
            )
            if not result.passed:
                tx.emit(
                    GateFailed(
                        seq=tx.seq,
                        at=tx.at,
                        task_id=task_id,
                        step=step.name,
                        gate=result.name,
                        feedback=result.feedback,
                        on_failure="retry",
                    )
                )
                self._failed(tx, step.name, result.feedback or "final output mismatch")
                return
        tx.emit(RunCompleted(seq=tx.seq, at=tx.at, final_output=output, reason=reason))

    def _stop_reason(self, state: RunState, output: Any) -> str | None:
        if self.goals:
            scope = {"output": output, "context": state.context, "steps": briefing.steps_scope(self, state)}
            for kind, expression in self.goals:
                try:
                    met = compile_condition(expression, STOP_NAMES).holds(scope)
                except (ConditionFailed, ExpressionError):  # a missing key or a type error: not met
                    met = False
                if met:
                    return f"{kind}: {expression}"
        if self.quality is not None and isinstance(output, dict):
            score = output.get("score")
            if isinstance(score, int | float) and not isinstance(score, bool) and score >= self.quality:
                return f"quality_threshold {self.quality:g} reached (score {score})"
        return None

    def _failed(self, tx: Transaction, name: str, feedback: str, *, abort: bool = False) -> None:
        """An attempt of `name` failed: retry within budget, else fail the step and maybe the run."""
        state = tx.state
        step, current = self.steps[name], state.steps[name]
        retry = briefing.retry_policy(self, step)
        if not abort and step.allow_retry and current.attempt <= retry.max_retries:
            attempt = current.attempt + 1
            if step.run is not None:
                delay = backoff_delay(retry, current.attempt, seed=state.seed, step=name)
                not_before = tx.now + timedelta(seconds=delay)
                tx.emit(
                    RetryScheduled(
                        seq=tx.seq,
                        at=tx.at,
                        step=name,
                        attempt=attempt,
                        delay_seconds=delay,
                        not_before=iso(not_before),
                        feedback=feedback,
                    )
                )
                self._request_command_step(tx, step, step.run, attempt, not_before)
            else:
                tx.emit(
                    RetryScheduled(
                        seq=tx.seq,
                        at=tx.at,
                        step=name,
                        attempt=attempt,
                        delay_seconds=0.0,
                        not_before=tx.at,
                        feedback=feedback,
                        compared=self._compared(state, name, feedback),
                    )
                )
                # only while a retry is left to save (this branch) and a turn for it: else the run fails
                # as it always has
                stuck = diagnose(name, current.streak, self.stuck) if self.stuck is not None else None
                if stuck is not None and state.status != "paused" and state.turn < self.max_turns:
                    tx.emit(RunPaused(seq=tx.seq, at=tx.at, reason="stuck", detail=stuck))
                self._issue(tx, step, attempt, feedback, current.visit_input)
            return
        first_line = feedback.strip().splitlines()[0] if feedback.strip() else "no detail"
        reason = (
            f"step '{name}' aborted: {first_line}"
            if abort
            else f"step '{name}' failed after {current.attempt} attempt{'s' if current.attempt != 1 else ''}: "
            f"{first_line}"
        )
        fallback = patterns.on_failure(self.spec, step, feedback)
        others = state.active_steps() - {name}
        later = fallback is None and not self.spec.policy.fail_fast and bool(others)
        tx.emit(StepFailed(seq=tx.seq, at=tx.at, step=name, reason=reason, fail_run_later=later))
        if fallback is not None:
            self._start_step(tx, fallback)
        elif not later:
            tx.emit(RunFailed(seq=tx.seq, at=tx.at, reason=reason))

    def _compared(self, state: RunState, name: str, feedback: str) -> Compared | None:
        """The failed attempt as stuck detection compares it (None with `policy.stuck: false`)."""
        if self.stuck is None:
            return None
        answer = state.answers.get(f"{name}#{state.steps[name].issued}")
        return Compared(
            failure=normalise(feedback),
            digest=answer.digest if answer is not None else None,
            tree=state.workspace.tree if state.workspace is not None else None,
        )

    def _finish(self, tx: Transaction) -> None:
        """End-of-transition rules: a failing run whose branches are done, and the turn budget."""
        state = tx._state
        if state is None or state.ended:
            return
        if state.failing and not state.active_steps() and state.approval is None:
            tx.emit(RunFailed(seq=tx.seq, at=tx.at, reason=state.failing))
        elif state.turn >= self.max_turns and state.tasks:
            tx.emit(
                RunFailed(
                    seq=tx.seq,
                    at=tx.at,
                    reason=f"max_turns {self.max_turns} reached{self._before_passed(state)}",
                )
            )

    def _before_passed(self, state: RunState) -> str:
        waiting = sorted(state.active_steps()) or sorted(
            n for n, s in state.steps.items() if s.status == "pending"
        )
        if not waiting:
            return ""
        names = ", ".join(f"'{n}'" for n in waiting[:3])
        return f" before step{'s' if len(waiting) > 1 else ''} {names} passed"

    # --- issuing work --------------------------------------------------------------------------

    def _start_step(self, tx: Transaction, move: Move) -> None:
        step = self.steps[move.step]
        if step.run is not None:
            self._request_command_step(tx, step, step.run, 1, tx.now)
        else:
            self._issue(tx, step, 1, move.feedback, briefing.task_input_of(self, tx.state, step, move.input))

    def _request_command_step(
        self, tx: Transaction, step: Step, argv: list[str], attempt: int, not_before: datetime
    ) -> None:
        task_id = f"{step.name}#{tx.state.steps[step.name].issued + 1}"
        tx.emit(
            CommandRequested(
                seq=tx.seq,
                at=tx.at,
                command_id=task_id,
                kind="step",
                step=step.name,
                task_id=task_id,
                gate=None,
                argv=argv,
                attempt=attempt,
                timeout_seconds=step.timeout_seconds or DEFAULT_COMMAND_TIMEOUT_SECONDS,
                not_before=iso(not_before),
            )
        )

    def _issue(
        self, tx: Transaction, step: Step, attempt: int, feedback: str | None, task_input: dict[str, Any]
    ) -> None:
        state = tx.state
        if state.status == "paused" and state.paused_for is None:
            pass  # paused by a setup error: open tasks go on
        elif self.budget is not None and self.budget.mode == "audit":
            warning = budgeting.budget_text(self, state, step.name, tx.now)
            if (
                warning is not None
                and warning.split(" reached")[0] != (state.budget_warning or "").split(" reached")[0]
            ):
                tx.emit(BudgetReached(seq=tx.seq, at=tx.at, detail=warning))
        else:
            reached = budgeting.budget_reached(self, state, step, tx.now)
            if reached is not None and state.status != "paused":
                tx.emit(RunPaused(seq=tx.seq, at=tx.at, reason="budget", detail=reached))
            if state.status == "paused":
                tx.emit(
                    TaskHeld(
                        seq=tx.seq,
                        at=tx.at,
                        step=step.name,
                        attempt=attempt,
                        feedback=feedback,
                        input=task_input,
                    )
                )
                return
        task_id = f"{step.name}#{state.steps[step.name].issued + 1}"
        timeout = briefing.step_timeout(self, step)
        assert step.agent is not None, "an agent step names its agent (the spec's validation)"
        logged, refs = by_reference(task_input, output_refs(state))
        tx.emit(
            TaskIssued(
                seq=tx.seq,
                at=tx.at,
                task_id=task_id,
                step=step.name,
                agent=step.agent,
                attempt=attempt,
                instructions=briefing.instructions(
                    self, state, step, attempt=attempt, feedback=feedback, task_input=task_input
                ),
                input=logged,
                output_schema=briefing.output_schema(self, step),
                feedback=feedback,
                expires_at=iso(tx.now + timedelta(seconds=timeout)) if timeout else None,
                input_refs=refs or None,
            )
        )

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
