"""Properties of the engine and the runs service under random drives (hypothesis).

For random sequences of submissions (any open task, outputs that pass or fail a condition gate,
reported failures, the same submission twice, a different output for a closed task, clock jumps that
expire tasks, a command gate that starts or stops failing) against a few specs:

- the live state the service keeps equals the fold of the stored events from scratch, and equals
  the state a fresh service loads through snapshot + tail;
- the same submission twice appends nothing and gets the same answer;
- replaying or loading a run never runs a command again: a command gate appends a line to a counter
  file, and the counter only ever matches the `command_finished` events in the log.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from clock import Clock
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loopengt_core.engine.view import StepAnswer, run_view
from loopengt_core.model.errors import Conflict, NotFound
from loopengt_core.model.state import project_run
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

SNAPSHOT_EVERY = 5
COUNTER = "counter.txt"
BREAK = "break-the-command"
# Appends one line per run; fails while the BREAK file exists (so a command gate can fail too).
COUNT = (
    "import os, sys\n"
    f"open({COUNTER!r}, 'a').write('ran\\n')\n"
    f"sys.exit(1 if os.path.exists({BREAK!r}) else 0)\n"
)
PY = sys.executable

OK_GATE = {"name": "ok", "condition": "output.ok == `true`", "feedback": "set ok to true"}
COUNT_GATE = {"name": "counted", "command": [PY, "-c", COUNT]}

SPECS: dict[str, dict[str, Any]] = {
    "sequential": {
        "name": "seq-prop",
        "pattern": "sequential",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "first", "agent": "a", "timeout_seconds": 30, "verification_gates": ["ok", "counted"]},
            {"name": "second", "agent": "a", "timeout_seconds": 30, "verification_gates": ["ok", "signoff"]},
            {"name": "third", "agent": "a"},
        ],
        "policy": {
            "max_turns": 5,
            "max_total_time_seconds": 400,
            "retry": {"max_retries": 3, "initial_delay_seconds": 0},
            "verification_gates": [OK_GATE, COUNT_GATE, {"name": "signoff", "approval": True}],
        },
    },
    "parallel": {
        "name": "fan-prop",
        "pattern": "parallel_fan_out",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "a", "agent": "a", "timeout_seconds": 30, "verification_gates": ["ok"]},
            {"name": "b", "agent": "a", "verification_gates": ["ok", "counted"]},
            {"name": "c", "agent": "a", "timeout_seconds": 45},
            {"name": "join", "agent": "a", "dependencies": ["a", "b", "c"], "verification_gates": ["ok"]},
        ],
        "policy": {
            "max_turns": 6,
            "max_concurrency": 2,
            "fail_fast": False,
            "retry": {"max_retries": 2, "initial_delay_seconds": 0},
            "verification_gates": [OK_GATE, COUNT_GATE],
        },
    },
    "evaluator": {
        "name": "eval-prop",
        "pattern": "evaluator_optimizer",
        "agents": [{"name": "critic"}, {"name": "writer"}],
        "steps": [
            {"name": "evaluate", "agent": "critic", "timeout_seconds": 30},
            {"name": "improve", "agent": "writer", "verification_gates": ["ok", "counted"]},
        ],
        "policy": {
            "max_turns": 5,
            "retry": {"max_retries": 2, "initial_delay_seconds": 0},
            "verification_gates": [OK_GATE, COUNT_GATE],
        },
    },
}


json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)

submit = st.tuples(
    st.just("submit"),
    st.integers(0, 3),  # which open task
    st.sampled_from([True, True, True, False]),  # passes the `ok` gate (mostly, so runs get far)
    st.floats(0, 1),  # an evaluator's score
    json_value,  # extra payload
)
# an output every gate and every evaluator accepts, so that runs get far (joins, completion, max_turns)
good = st.tuples(st.just("submit"), st.integers(0, 3), st.just(True), st.just(1.0), st.none())
failure = st.tuples(st.just("fail"), st.integers(0, 3), st.text(max_size=12))
action = st.one_of(
    good,
    good,
    good,
    good,
    submit,
    submit,
    failure,
    st.tuples(st.just("approve"), st.booleans(), st.text(max_size=8)),
    st.tuples(st.just("repeat")),
    st.tuples(st.just("conflict")),
    st.tuples(st.just("advance"), st.sampled_from([0, 1, 5, 20, 29, 30, 31, 46, 500])),
    st.tuples(st.just("toggle_command")),
)


@dataclass
class Harness:
    root: Path
    clock: Clock = field(default_factory=Clock)
    last: tuple[str, Any, str, str | None, StepAnswer] | None = None

    def __post_init__(self) -> None:
        self.store = FileStore(self.root / "store", snapshot_every=SNAPSHOT_EVERY)
        self.runs = self.fresh_runs(self.store)

    def fresh_runs(self, store: FileStore) -> Runs:
        return Runs(
            store,
            clock=self.clock,
            cwd=self.root,
            allow_inline_commands=True,
            snapshot_every=SNAPSHOT_EVERY,
        )

    def count(self, run_id: str) -> int:
        return len(self.store.events(run_id))

    def counter(self) -> int:
        path = self.root / COUNTER
        return len(path.read_text().splitlines()) if path.exists() else 0

    def check(self, run_id: str) -> None:
        live = self.runs.kernel.read(run_id).state
        events = self.store.events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        folded = project_run(events)
        assert folded.model_dump() == live.model_dump()
        assert self.runs.get_run(run_id).model_dump() == run_view(folded).model_dump()
        finished = sum(1 for e in events if e.type == "command_finished")
        assert self.counter() == finished
        assert not live.commands  # every command ran before the call that requested it answered

    def check_reload(self, run_id: str) -> None:
        """A fresh service (a restart) loads snapshot + tail to the same state and runs nothing."""
        before = self.counter()
        live = self.runs.kernel.read(run_id).state.model_dump()
        store = FileStore(self.root / "store", snapshot_every=SNAPSHOT_EVERY)
        loaded = store.load(run_id)
        if live["seq"] >= SNAPSHOT_EVERY:
            assert loaded.snapshot is not None
            assert loaded.snapshot_seq >= SNAPSHOT_EVERY
            assert loaded.snapshot_seq + len(loaded.events) == live["seq"]
        fresh = self.fresh_runs(store)
        assert fresh.kernel.read(run_id).state.model_dump() == live
        assert fresh.get_run(run_id).model_dump() == self.runs.get_run(run_id).model_dump()
        fresh.resume(run_id)  # runs pending commands only; there are none
        assert self.counter() == before
        assert project_run(store.events(run_id)).model_dump() == fresh.kernel.read(run_id).state.model_dump()
        store.close()

    def act(self, run_id: str, step: tuple[Any, ...]) -> None:
        kind = step[0]
        view = self.runs.get_run(run_id)
        if kind in ("submit", "fail"):
            if not view.tasks:
                with pytest.raises((Conflict, NotFound)):
                    self.runs.step(run_id, "first#1", "x")
                return
            task = view.tasks[step[1] % len(view.tasks)]
            if kind == "submit":
                _, _, passes, score, extra = step
                output: Any = {"ok": passes, "score": score, "comments": "c", "extra": extra}
                outcome, error = "success", None
            else:
                output, outcome, error = None, "failure", step[2]
            answer = self.runs.step(run_id, task.task_id, output, outcome=outcome, error=error)
            assert answer.accepted is True
            self.last = (task.task_id, output, outcome, error, answer)
        elif kind == "repeat" and self.last is not None:
            task_id, output, outcome, error, first = self.last
            count = self.count(run_id)
            again = self.runs.step(run_id, task_id, output, outcome=outcome, error=error)
            assert self.count(run_id) == count
            assert again.accepted is True
            # The recorded results, as recorded now: an approval still pending at the first answer
            # (passed None) may since have been answered by a person; nothing else may differ.
            assert [g.name for g in again.gate_results] == [g.name for g in first.gate_results]
            for before, now in zip(first.gate_results, again.gate_results, strict=True):
                assert now == before or (before.passed is None and now.passed is not None)
        elif kind == "conflict" and self.last is not None:
            task_id = self.last[0]
            count = self.count(run_id)
            with pytest.raises(Conflict):
                self.runs.step(run_id, task_id, {"something": "else"})
            assert self.count(run_id) == count
        elif kind == "approve":
            if view.status != "waiting_approval":
                count = self.count(run_id)
                with pytest.raises(Conflict):
                    self.runs.approve(run_id)
                assert self.count(run_id) == count
                return
            approved, comment = step[1], step[2]
            after = self.runs.approve(run_id, approved=approved, comment=comment or None, by="tester")
            assert after.status != "waiting_approval" or not approved
        elif kind == "advance":
            self.clock.advance(step[1])
        elif kind == "toggle_command":
            flag = self.root / BREAK
            if flag.exists():
                flag.unlink()
            else:
                flag.write_text("")


def drive(spec_name: str, actions: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(Path(tmp))
        run_id = h.runs.start_run(spec=SPECS[spec_name], run_id="prop").run_id
        h.check(run_id)
        for i, step in enumerate(actions):
            h.act(run_id, step)
            h.check(run_id)
            if i % 10 == 9:
                h.check_reload(run_id)
        # then good work only: every run must reach an end (no run is ever stuck with nothing open)
        for _ in range(40):
            view = h.runs.get_run(run_id)
            if view.status in ("completed", "failed", "cancelled"):
                break
            if view.status == "waiting_approval":
                h.runs.approve(run_id)
            elif view.paused_for == "stuck":  # stuck detection is on by default: a person gives a hint
                h.runs.resume(run_id, hint="look at the command's output")
            else:
                assert view.tasks, view.next_action
                h.act(run_id, ("submit", 0, True, 1.0, None))
            h.check(run_id)
        view = h.runs.get_run(run_id)
        assert view.status in ("completed", "failed"), view.status
        assert view.tasks == []
        h.check_reload(run_id)
        event(f"ended {view.status}" + (f": {view.error.split(':')[0]}" if view.error else ""))
        types = {e.type for e in h.store.events(run_id)}
        for kind in (
            "task_expired",
            "command_finished",
            "approval_given",
            "approval_rejected",
            "step_failed",
        ):
            if kind in types:
                event(f"saw {kind}")
        h.store.close()


PROPERTY = settings(
    max_examples=45,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(actions=st.lists(action, max_size=30))
def test_sequential_with_gates_and_retries(actions: list[tuple[Any, ...]]) -> None:
    drive("sequential", actions)


@PROPERTY
@given(actions=st.lists(action, max_size=30))
def test_parallel_fan_out(actions: list[tuple[Any, ...]]) -> None:
    drive("parallel", actions)


@PROPERTY
@given(actions=st.lists(action, max_size=30))
def test_evaluator_optimizer(actions: list[tuple[Any, ...]]) -> None:
    drive("evaluator", actions)
