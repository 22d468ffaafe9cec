"""The command runner on its own: a real file store and transition kernel as its `RunHost`, no `Runs`.

It runs the commands a decision made due, records each outcome with the next command's claim in one
lock cycle, takes over a claim whose process is gone, and leaves a claim handed over by a transition
that never reached the log to a claim of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopengt_core.engine import Engine
from loopengt_core.engine.validation import load_spec
from loopengt_core.model.events import AnyEvent, CommandAbandoned, CommandFinished, CommandStarted
from loopengt_core.model.state import Command, RunState, project_run
from loopengt_core.service.commandrunner import CommandRunner, RunHost
from loopengt_core.service.kernel import TransitionKernel
from loopengt_core.service.loaded import LoadedRun, no_answer
from loopengt_core.service.workspace import WorkspaceState
from loopengt_core.store.files import FileStore

RUN = "r"


def spec_text(gates: list[list[str]]) -> str:
    names = [f"g{i}" for i in range(len(gates))]
    return yaml.safe_dump(
        {
            "name": "runner",
            "goal": "run gates",
            "pattern": "sequential",
            "agents": [{"name": "a"}],
            "steps": [{"name": "work", "agent": "a", "verification_gates": names}],
            "policy": {
                "retry": {"max_retries": 0},
                "verification_gates": [{"name": n, "command": g} for n, g in zip(names, gates, strict=True)],
            },
        }
    )


def no_files(root: str) -> WorkspaceState:
    raise AssertionError(f"a run without a workspace records no files (asked for {root})")


class Host:
    """The kernel as the runner's host, counting the runner's lock cycles."""

    def __init__(self, store: FileStore) -> None:
        self.kernel = TransitionKernel(
            store,
            clock=lambda: datetime.now(UTC),
            tracer=None,
            snapshot_every=100,
            cached_runs=None,
            on_pause=lambda run_id, label: None,
        )
        self.cycles = 0

    def clock(self) -> datetime:
        return self.kernel.clock()

    def transition(self, run_id: str, decide: Any) -> LoadedRun:
        self.cycles += 1
        return self.kernel.transition(run_id, decide)

    def cached(self, run_id: str) -> LoadedRun | None:
        return self.kernel.cached(run_id)

    def live_root(self, run_id: str) -> str | None:
        return self.kernel.live_root(run_id)

    def workdir(self, run_id: str, step: str) -> Path | None:
        return self.kernel.workdir(run_id, step)

    def announce(self) -> None:
        self.kernel.announce()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    store = FileStore(tmp_path / "store")
    yield store
    store.close()


def started(store: FileStore, gates: list[list[str]]) -> Engine:
    text = spec_text(gates)
    engine = Engine(load_spec(text, source="test"))
    events = engine.start(
        run_id=RUN,
        now=datetime.now(UTC),
        seed=1,
        context={},
        spec_hash=hashlib.sha256(text.encode()).hexdigest(),
    )
    store.create_run(RUN, text, events)
    return engine


def submit(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
    return engine.submit(state, "work#1", {"done": True}, outcome="success", error=None, digest="d", now=now)


def runner_of(host: RunHost, tmp_path: Path) -> CommandRunner:
    return CommandRunner(host, cwd=tmp_path, snapshot=no_files)


def test_a_decision_hands_its_claim_over_and_each_outcome_claims_the_next(
    store: FileStore, tmp_path: Path
) -> None:
    started(store, [["echo", "one"], ["echo", "two"]])
    host = Host(store)
    runner = runner_of(host, tmp_path)
    host.kernel.locked(RUN, submit, no_answer, claim=runner.claim(RUN))
    assert runner.holds(RUN)  # claimed in the decision's cycle, for the worker
    runner.pump(RUN)
    assert host.cycles == 2  # one per outcome, the second claim inside the first outcome's cycle
    assert not runner.holds(RUN)
    events = store.events(RUN)
    kinds = [type(e).__name__ for e in events if isinstance(e, CommandStarted | CommandFinished)]
    assert kinds == ["CommandStarted", "CommandFinished", "CommandStarted", "CommandFinished"]
    assert [e.runner for e in events if isinstance(e, CommandStarted)] == [runner.runner] * 2
    state = project_run(events)
    assert state.status == "completed"
    assert project_run(events).model_dump() == host.kernel.read(RUN).state.model_dump()


def test_without_a_handed_claim_the_worker_claims_in_a_cycle_of_its_own(
    store: FileStore, tmp_path: Path
) -> None:
    started(store, [["echo", "one"]])
    host = Host(store)
    runner = runner_of(host, tmp_path)
    host.kernel.locked(RUN, submit, no_answer)  # a decision that leaves its command due, unclaimed
    runner.pump(RUN)
    assert host.cycles == 2  # the claim, then the outcome (which finds nothing left)
    assert host.kernel.read(RUN).state.status == "completed"


def test_a_claim_whose_transition_failed_is_not_run_unclaimed(store: FileStore, tmp_path: Path) -> None:
    """A decision that claimed and then failed leaves no claim in the log: the worker claims it anew."""
    started(store, [["echo", "one"]])
    host = Host(store)
    runner = runner_of(host, tmp_path)
    claim = runner.claim(RUN)

    def claim_then_fail(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
        claim(engine, state, now)
        raise RuntimeError("the transition fails after the claim")

    with pytest.raises(RuntimeError):
        host.kernel.locked(RUN, submit, no_answer, claim=claim_then_fail)
    assert not any(isinstance(e, CommandStarted) for e in store.events(RUN))
    runner.pump(RUN)
    starts = [e for e in store.events(RUN) if isinstance(e, CommandStarted)]
    assert len(starts) == 1
    assert host.kernel.read(RUN).state.status == "completed"


def test_a_claim_of_a_process_that_is_gone_is_abandoned_and_taken_over(
    store: FileStore, tmp_path: Path
) -> None:
    started(store, [["echo", "one"]])
    host = Host(store)
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    ghost = runner_of(host, tmp_path)
    ghost.runner = f"{ghost.runner.rpartition(':')[0]}:{gone}"
    host.kernel.locked(RUN, submit, no_answer, claim=ghost.claim(RUN))  # then its process died
    runner = runner_of(host, tmp_path)
    runner.pump(RUN)
    events = store.events(RUN)
    [abandoned] = [e for e in events if isinstance(e, CommandAbandoned)]
    assert abandoned.runner == ghost.runner
    assert abandoned.reason == "runner_died"
    assert [e.runner for e in events if isinstance(e, CommandStarted)] == [ghost.runner, runner.runner]
    assert host.kernel.read(RUN).state.status == "completed"


def test_the_runner_tells_who_watches_and_where_it_ran(store: FileStore, tmp_path: Path) -> None:
    started(store, [["sh", "-c", "pwd"]])
    host = Host(store)
    seen: list[Command] = []
    runner = CommandRunner(host, cwd=tmp_path, snapshot=no_files, on_command=lambda c, peek: seen.append(c))
    host.kernel.locked(RUN, submit, no_answer, claim=runner.claim(RUN))
    runner.pump(RUN)
    assert [c.argv for c in seen] == [["sh", "-c", "pwd"]]
    [finished] = [e for e in store.events(RUN) if isinstance(e, CommandFinished)]
    assert str(tmp_path) in finished.output
