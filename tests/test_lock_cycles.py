"""How many times a step takes its run's lock: one cycle for the decision, one per command's outcome.

The decision's cycle also claims (leases) the first command it makes due when this process runs it, and
each outcome's cycle claims the next due one, so no cycle is spent on a claim alone and none on a trailing
claim that finds nothing left. Counted by wrapping the kernel's one lock entry (`TransitionKernel.lock`):
every read or transition under the run's lock passes through it, from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.events import CommandFinished, CommandStarted
from loopengt_core.service.async_submit import quick, submit
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore


def spec(gates: int) -> dict[str, Any]:
    """One agent step with `gates` command gates (`echo ok`, each its own command), then the end."""
    names = [f"g{i}" for i in range(gates)]
    return {
        "name": "cycles",
        "goal": "count lock cycles",
        "pattern": "sequential",
        "agents": [{"name": "a"}],
        "steps": [{"name": "work", "agent": "a", "verification_gates": names}],
        "policy": {"verification_gates": [{"name": n, "command": ["echo", "ok"]} for n in names]},
    }


class Counted:
    """The run's lock acquisitions from now on, wherever they come from (caller thread or command worker)."""

    def __init__(self, runs: Runs) -> None:
        self.count = 0
        self._guard = threading.Lock()
        lock = runs.kernel.lock

        @contextmanager
        def counting(run_id: str, wait: bool) -> Iterator[None]:
            with lock(run_id, wait):
                with self._guard:
                    self.count += 1
                yield

        runs.kernel.lock = counting  # type: ignore[method-assign]  # the test's probe on the one lock entry

    def reset(self) -> None:
        with self._guard:
            self.count = 0


def started(tmp_path: Path, gates: int) -> tuple[Runs, str, str, Counted]:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path, allow_inline_commands=True)
    view = runs.start_run(spec=spec(gates), run_id="r")
    counted = Counted(runs)
    return runs, view.run_id, view.tasks[0].task_id, counted


def quiet(runs: Runs, run_id: str) -> None:
    """Wait until this process's command worker is done with the run (what it does after the answer counts)."""
    done = runs.kernel.wait_until(lambda: not runs.commands.busy(run_id), 10.0)
    assert done, "the command worker did not finish"


def outcome_events(runs: Runs, run_id: str) -> tuple[int, int]:
    events = runs.trace(run_id)
    return (
        sum(isinstance(e, CommandStarted) for e in events),
        sum(isinstance(e, CommandFinished) for e in events),
    )


@pytest.mark.parametrize(("gates", "cycles"), [(0, 1), (1, 2), (2, 3)])
def test_a_step_takes_one_lock_cycle_and_one_per_command(tmp_path: Path, gates: int, cycles: int) -> None:
    runs, run_id, task_id, counted = started(tmp_path, gates)
    answer = runs.step(run_id, task_id, {"done": True})
    quiet(runs, run_id)
    assert answer.status == "completed", answer
    assert [r.passed for r in answer.gate_results] == [True] * gates
    assert outcome_events(runs, run_id) == (gates, gates)
    assert counted.count == cycles


@pytest.mark.anyio
@pytest.mark.parametrize(("gates", "cycles"), [(0, 1), (1, 2), (2, 3)])
async def test_a_step_from_the_event_loop_takes_the_same_cycles(
    tmp_path: Path, gates: int, cycles: int
) -> None:
    runs, run_id, task_id, counted = started(tmp_path, gates)
    runs.get_run(run_id)  # loaded here, so the step is quick: on the event loop, lock tried, not waited for
    assert quick(runs, run_id, task_id)
    counted.reset()
    answer = await submit(runs, run_id, task_id, {"done": True}, outcome="success", error=None)
    quiet(runs, run_id)
    assert answer.status == "completed", answer
    assert outcome_events(runs, run_id) == (gates, gates)
    assert counted.count == cycles
